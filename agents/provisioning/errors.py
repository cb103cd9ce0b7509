"""Errors of the provisioning API, with the names, messages and codes of iotagent-node-lib.

    ProvisioningError
     +-- MissingHeaders      400 MISSING_HEADERS
     +-- WrongSyntax         400 WRONG_SYNTAX
     +-- BadRequest          400 BAD_REQUEST
     |    +-- InvalidField   400 BAD_REQUEST, naming the field (`field` member)
     +-- DeviceNotFound      404 DEVICE_NOT_FOUND
     +-- GroupNotFound       404 DEVICE_GROUP_NOT_FOUND
     +-- DuplicateDevice     409 DUPLICATE_DEVICE_ID
     |    +-- DuplicateDevEui  409 DUPLICATE_DEVICE_ID, a LoRaWAN DevEUI already provisioned
     +-- DuplicateGroup      409 DUPLICATE_GROUP

The body is `{"name": ..., "message": ...}` as the FIWARE agent sends it.
"""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.responses import JSONResponse


class ProvisioningError(Exception):
    status = 500
    name = "SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingHeaders(ProvisioningError):
    status, name = 400, "MISSING_HEADERS"

    def __init__(self, missing: list[str]) -> None:
        super().__init__("Some headers were missing from the request: " + json.dumps(missing, separators=(",", ":")))


class WrongSyntax(ProvisioningError):
    status, name = 400, "WRONG_SYNTAX"

    def __init__(self, detail: str = "Errors found validating request.") -> None:
        super().__init__("Wrong syntax in request: " + detail)


class BadRequest(ProvisioningError):
    status, name = 400, "BAD_REQUEST"


class InvalidField(BadRequest):
    """A configuration that could never work, with the field at fault (agents.provisioning.validation)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DeviceNotFound(ProvisioningError):
    status, name = 404, "DEVICE_NOT_FOUND"

    def __init__(self, device_id: str) -> None:
        super().__init__("No device was found with id:" + device_id)


class GroupNotFound(ProvisioningError):
    status, name = 404, "DEVICE_GROUP_NOT_FOUND"

    def __init__(self, fields: list[str], values: list[str]) -> None:
        super().__init__(
            "Couldn't find device group for fields: " + json.dumps(fields, separators=(",", ":"))
            + " and values: " + json.dumps(values, separators=(",", ":"))
        )


class DuplicateDevice(ProvisioningError):
    status, name = 409, "DUPLICATE_DEVICE_ID"

    def __init__(self, device_id: str) -> None:
        super().__init__("A device with the same pair (Service, DeviceId) was found:" + device_id)


class DuplicateDevEui(DuplicateDevice):
    """A LoRaWAN DevEUI already provisioned (in any service: an EUI-64 names one radio; which one is not said)."""

    def __init__(self, dev_eui: str) -> None:
        ProvisioningError.__init__(self, f"A device with the same DevEUI was found: {dev_eui}")


class DuplicateGroup(ProvisioningError):
    status, name = 409, "DUPLICATE_GROUP"

    def __init__(self, resource: str, apikey: str) -> None:
        super().__init__(f"A device configuration already exists for resource {resource} and API Key {apikey}")


async def handle(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProvisioningError)
    body = {"name": exc.name, "message": exc.message}
    if isinstance(exc, InvalidField):
        body["field"] = exc.field
    return JSONResponse(body, status_code=exc.status)
