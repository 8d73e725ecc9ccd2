"""Element names per entity, from Intuit's XSDs (``shared/specs/qbo-xsd/``).

Generated from ``IntuitNamesTypes.xsd`` (Customer, Vendor, Employee) and ``Finance.xsd`` (Item,
Account, Invoice, Payment, SalesItemLineDetail): every ``xs:element`` of the type and of the
types it extends (``IntuitEntity``, ``NameBase``, ``Transaction``, ``SalesTransaction``).
A create/update body whose top-level property is not in its entity's list is refused with
error 2010 ("Request has invalid or unsupported property"), as QuickBooks does
(python-quickbooks #164; QuickBooks-V3-DotNET-SDK #163). The JSON attributes ``sparse``,
``domain`` and ``status`` are XML attributes in the XSD and are accepted too.
"""

from __future__ import annotations

__all__ = ["ATTRIBUTES", "PROPERTIES"]

ATTRIBUTES = frozenset({"sparse", "domain", "status"})

PROPERTIES: dict[str, frozenset[str]] = {
    "Customer": frozenset({
        "ARAccountRef", "AcctNum", "Active", "AltContactName", "AlternatePhone",
        "AttachableRef", "Balance", "BalanceWithJobs", "BillAddr", "BillWithParent",
        "BusinessNumber", "CCDetail", "ClientCompanyId", "ClientEntityId", "CompanyName",
        "ContactName", "CreditLimit", "CurrencyRef", "CustomField", "CustomerEx",
        "CustomerTypeRef", "DefaultTaxCodeRef", "DisplayName", "FamilyName", "Fax",
        "FullyQualifiedName", "GSTIN", "GSTRegistrationType", "GivenName", "Id", "IntuitId",
        "IsCISContractor", "IsProject", "Job", "JobInfo", "Level", "MetaData", "MiddleName",
        "Mobile", "Notes", "OpenBalanceDate", "Organization", "OtherAddr", "OtherContactInfo",
        "OverDueBalance", "ParentRef", "PaymentMethodRef", "PreferredDeliveryMethod",
        "PriceLevelRef", "PrimaryEmailAddr", "PrimaryPhone", "PrimaryTaxIdentifier",
        "PrintOnCheckName", "ResaleNum", "RootCustomerRef", "SalesRepRef", "SalesTermRef",
        "SecondaryTaxIdentifier", "ShipAddr", "Source", "Suffix", "SyncToken", "TDSEnabled",
        "TaxExemptionReasonId", "TaxGroupCodeRef", "TaxRateRef", "TaxRegime", "Taxable",
        "Title", "TotalExpense", "TotalRevenue", "UserId", "V4IDPseudonym", "WebAddr",
    }),
    "Vendor": frozenset({
        "APAccountRef", "AcctNum", "Active", "AltContactName", "AlternatePhone",
        "AttachableRef", "Balance", "BillAddr", "BillRate", "BusinessNumber", "CISRate",
        "CompanyName", "ContactName", "CostRate", "CreditLimit", "CurrencyRef", "CustomField",
        "DefaultTaxCodeRef", "DisplayName", "FamilyName", "Fax", "FullyQualifiedName", "GSTIN",
        "GSTRegistrationType", "GivenName", "HasTPAR", "Id", "IntuitId", "IsSubContractor",
        "MetaData", "MiddleName", "Mobile", "Notes", "OpenBalanceDate", "Organization",
        "OtherAddr", "OtherContactInfo", "ParentRef", "PrefillAccountRef", "PrimaryEmailAddr",
        "PrimaryPhone", "PrintOnCheckName", "ShipAddr", "Source", "SubcontractorType",
        "Suffix", "SyncToken", "T4AEligible", "T5018Eligible", "TDSEnabled", "TDSEntityTypeId",
        "TDSOverrideThreshold", "TDSSectionTypeId", "TaxCountry", "TaxIdEffectiveDate",
        "TaxIdentifier", "TaxReportingBasis", "TermRef", "Title", "UserId", "V4IDPseudonym",
        "Vendor1099", "VendorEx", "VendorPaymentBankDetail", "VendorTypeRef", "WebAddr",
    }),
    "Employee": frozenset({
        "Active", "AlternatePhone", "AttachableRef", "BillRate", "BillableTime", "BirthDate",
        "CompanyName", "CostRate", "CustomField", "DefaultTaxCodeRef", "DisplayName",
        "EmployeeEx", "EmployeeNumber", "EmployeeType", "FamilyName", "Fax",
        "FullyQualifiedName", "Gender", "GivenName", "HiredDate", "Id", "IntuitId", "MetaData",
        "MiddleName", "Mobile", "Notes", "Organization", "OtherAddr", "OtherContactInfo",
        "PrimaryAddr", "PrimaryEmailAddr", "PrimaryPhone", "PrintOnCheckName", "ReleasedDate",
        "SSN", "Suffix", "SyncToken", "Title", "UseTimeEntry", "UserId", "V4IDPseudonym",
        "WebAddr",
    }),
    "Item": frozenset({
        "AbatementRate", "Active", "AssetAccountRef", "AttachableRef", "AvgCost", "BuildPoint",
        "COGSAccountRef", "ClassRef", "CustomField", "DeferredRevenue", "DepositToAccountRef",
        "Description", "ExpenseAccountRef", "FullyQualifiedName", "Id", "IncomeAccountRef",
        "InvStartDate", "ItemAssemblyDetail", "ItemCategoryType", "ItemEx", "ItemGroupDetail",
        "Level", "ManPartNum", "MetaData", "Name", "ParentRef", "PaymentMethodRef",
        "PercentBased", "PrefVendorRef", "PrintGroupedItems", "PurchaseCost", "PurchaseDesc",
        "PurchaseTaxCodeRef", "PurchaseTaxIncluded", "QtyOnHand", "QtyOnPurchaseOrder",
        "QtyOnSalesOrder", "RatePercent", "ReorderPoint", "ReverseChargeRate",
        "SalesTaxCodeRef", "SalesTaxIncluded", "ServiceType", "Sku", "Source", "SpecialItem",
        "SpecialItemType", "SubItem", "SyncToken", "TaxClassificationRef", "Taxable",
        "TrackQtyOnHand", "Type", "UOMSetRef", "UQCDisplayText", "UQCId", "UnitPrice",
    }),
    "Account": frozenset({
        "AccountAlias", "AccountEx", "AccountPurposes", "AccountSubType", "AccountType",
        "AcctNum", "AcctNumExtn", "Active", "AttachableRef", "BankNum", "Classification",
        "CurrencyRef", "CurrentBalance", "CurrentBalanceWithSubAccounts", "CustomField",
        "Description", "FIName", "FullyQualifiedName", "Id", "JournalCodeRef", "MetaData",
        "Name", "OnlineBankingEnabled", "OpeningBalance", "OpeningBalanceDate", "ParentRef",
        "SubAccount", "SyncToken", "TaxAccount", "TaxCodeRef", "TxnLocationType",
    }),
    "Invoice": frozenset({
        "ARAccountRef", "AllowIPNPayment", "AllowOnlineACHPayment",
        "AllowOnlineCreditCardPayment", "AllowOnlinePayPalPayment", "AllowOnlinePayment",
        "ApplyTaxAfterDiscount", "AttachableRef", "AutoDocNumber", "AutoPayEligible",
        "Balance", "BillAddr", "BillEmail", "BillEmailBcc", "BillEmailCc", "CfdiUse",
        "CheckPayment", "ClassRef", "ConvenienceFeeDetail", "CreditCardPayment", "CurrencyRef",
        "CustomField", "CustomerMemo", "CustomerRef", "DeliveryInfo", "DepartmentRef",
        "Deposit", "DepositToAccountRef", "DiscountAmt", "DiscountRate", "DocNumber",
        "DueDate", "ECloudStatusTimeStamp", "EInvoiceStatus", "EmailStatus", "ExchangeRate",
        "Exportation", "FOB", "FinanceCharge", "FinancingProductType", "FreeFormAddress",
        "GlobalInfo", "GlobalTaxCalculation", "GovtTxnRefIdentifier", "GratuityEnabled",
        "HomeBalance", "HomeTotalAmt", "HomeTotalCostAmount", "Id", "InvoiceEx", "InvoiceLink",
        "InvoiceLinkExpiryDate", "InvoiceLinkSecurityCode", "LessCIS", "Line", "LinkedTxn",
        "MetaData", "PONumber", "PaymentDetailsMessage", "PaymentMethodRef", "PaymentRefNum",
        "PaymentType", "PrintStatus", "PrivateNote", "ProjectRef", "RecurDataRef",
        "RecurringInfo", "RemitToRef", "SalesRepRef", "SalesTermRef", "SchedulePayEligible",
        "ScheduledPaymentId", "ShipAddr", "ShipDate", "ShipFromAddr", "ShipMethodRef",
        "ShippingTaxIncludedInTotalTax", "SubscriptionPaymentsSetting", "SyncToken", "Tag",
        "TaxExemptionRef", "TaxFormNum", "TaxFormType", "TemplateRef", "TotalAmt",
        "TotalCostAmount", "TrackingNum", "TransactionLocationType", "TxnApprovalInfo",
        "TxnDate", "TxnSource", "TxnStatus", "TxnTaxDetail", "callToAction", "invoiceStatus",
        "invoiceStatusLog",
    }),
    "Payment": frozenset({
        "ARAccountRef", "AttachableRef", "CheckPayment", "CreditCardPayment", "CurrencyRef",
        "CustomField", "CustomerRef", "DepartmentRef", "DepositToAccountRef", "DocNumber",
        "ExchangeRate", "HomeTotalCostAmount", "Id", "Line", "LinkedTxn", "MetaData",
        "PaymentEx", "PaymentMethodRef", "PaymentRefNum", "PaymentType", "PrivateNote",
        "ProcessPayment", "ProjectRef", "RecurDataRef", "RecurringInfo", "RemitToRef",
        "SyncToken", "Tag", "TaxFormNum", "TaxFormType", "TotalAmt", "TotalCostAmount",
        "TransactionLocationType", "TxnApprovalInfo", "TxnDate", "TxnSource", "TxnStatus",
        "TxnTaxDetail", "UnappliedAmt",
    }),
    "SalesItemLineDetail": frozenset({
        "ClassRef", "DeferredRevenue", "DiscountAmt", "DiscountRate", "InventorySiteRef",
        "ItemAccountRef", "ItemRef", "MarkupInfo", "PriceLevelRef", "Qty", "RatePercent",
        "SalesItemLineDetailEx", "ServiceDate", "TaxClassificationRef", "TaxCodeRef",
        "TaxInclusiveAmt", "UOMRef", "UnitCostPrice", "UnitPrice",
    }),
}
