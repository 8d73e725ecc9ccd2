"""QuickBooks Online Fault envelopes (providers.md section 1.6).

``{"Fault":{"Error":[{"Message","Detail","code","element"}],"type":...},"time":...}`` --
``Message``/``Detail`` capitalised, ``code``/``element`` lower case, ``AuthorizatonFault``
misspelt as QuickBooks spells it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "QBOFault",
    "authentication_fault",
    "authorization_fault",
    "business_rule",
    "duplicate_name",
    "invalid_reference",
    "list_has_balance",
    "not_found",
    "required",
    "stale_object",
    "system_fault",
    "throttle_fault",
    "unsupported_property",
    "validation",
]


class QBOFault(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: str,
        *,
        element: str = "",
        fault_type: str = "ValidationFault",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.element = element
        self.fault_type = fault_type
        self.headers = headers or {}

    def fault(self) -> dict[str, Any]:
        """The inner ``Fault`` object (also used inside batch responses)."""
        return {
            "Error": [
                {
                    "Message": self.message,
                    "Detail": self.detail,
                    "code": self.code,
                    "element": self.element,
                }
            ],
            "type": self.fault_type,
        }

    def body(self, time: str) -> dict[str, Any]:
        return {"Fault": self.fault(), "time": time}


def validation(code: str, message: str, detail: str, element: str = "") -> QBOFault:
    return QBOFault(400, code, message, detail, element=element)


def required(element: str) -> QBOFault:
    return validation(
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {element} is missing in the request",
        element,
    )


def duplicate_name(kind: str) -> QBOFault:
    """6240. For the shared name list the Detail is the one quoted in QuickBooks-V3-PHP-SDK
    issue #241 ("Another customer, vendor or employee is already using this name.")."""
    what = {
        "customer": "customer, vendor or employee", "vendor": "customer, vendor or employee",
        "employee": "customer, vendor or employee", "item": "product or service",
        "account": "account",
    }[kind]
    return validation(
        "6240",
        "Duplicate Name Exists Error",
        f"The name supplied already exists. : Another {what} is already using this name. "
        "Please use a different name.",
    )


def unsupported_property(entity: str, name: str) -> QBOFault:
    """2010 for a body property the entity does not have (python-quickbooks #164,
    QuickBooks-V3-DotNET-SDK #163)."""
    return validation(
        "2010",
        "Request has invalid or unsupported property",
        f"Property Name:{name} specified is unsupported or invalid for {entity}",
        name,
    )


def list_has_balance() -> QBOFault:
    """Making a customer with a non-zero balance inactive. Message and Detail as quoted in
    quickbooks-ruby issue #390; the numeric code is not public (assumption: 6000)."""
    return validation(
        "6000",
        "Delete List Has Balance Error",
        "The entity you are trying to delete has an open balance. : This customer cannot be "
        "deleted because it has a non-zero balance",
        "Active",
    )


def stale_object() -> QBOFault:
    return validation(
        "5010",
        "Stale Object Error",
        "Stale Object Error : You and BlueClerk Sandbox were working on this at the same time. "
        "BlueClerk Sandbox finished before you did, so your work was not saved.",
    )


def not_found(entity: str, ident: str) -> QBOFault:
    return validation(
        "610",
        "Object Not Found",
        f"Object Not Found : Something you're trying to use has been made inactive. "
        f"Check the fields with accounts, customers, items, vendors or employees. "
        f"({entity} Id={ident})",
    )


def invalid_reference(what: str, ident: object, element: str = "") -> QBOFault:
    return validation(
        "2500",
        "Invalid Reference Id",
        f"Invalid Reference Id : {what} element id {ident} not found",
        element,
    )


def business_rule(detail: str, element: str = "") -> QBOFault:
    return validation(
        "6000",
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: {detail}",
        element,
    )


def authentication_fault() -> QBOFault:
    return QBOFault(
        401,
        "3200",
        "message=AuthenticationFailed; errorCode=003200; statusCode=401",
        "Token expired, revoked or not recognised",
        fault_type="AuthenticationFault",
        headers={"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'},
    )


def authorization_fault(realm_id: str) -> QBOFault:
    return QBOFault(
        403,
        "3100",
        "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
        f"The access token does not grant access to company {realm_id}",
        fault_type="AuthorizatonFault",  # sic: QuickBooks' own spelling
    )


def throttle_fault(retry_after: int = 60) -> QBOFault:
    return QBOFault(
        429,
        "3001",
        "message=ThrottleExceeded; errorCode=003001; statusCode=429",
        "The request limit was reached.",
        fault_type="SERVICE",
        headers={"Retry-After": str(retry_after)},
    )


def system_fault(status: int = 503) -> QBOFault:
    return QBOFault(
        status,
        "10000",
        "An application error has occurred while processing your request",
        "System Failure Error: Service is temporarily unavailable (simulated)",
        fault_type="SystemFault",
    )
