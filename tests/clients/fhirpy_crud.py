#!/usr/bin/env python3
"""Black-box CRUD test of a running Hearth server with the Python FHIR client fhirpy.

    pip install -r tests/clients/requirements.txt
    HEARTH_BASE_URL=http://127.0.0.1:8080/fhir python3 tests/clients/fhirpy_crud.py

Creates a Patient, reads it back, updates it (versionId 1 -> 2), searches it by
identifier, deletes it and checks that reading it then fails (410 Gone).
Prints each step; exits 0 on success, 1 on a mismatch, 2 on an unexpected error.
"""
import os
import sys
import traceback
import uuid

import requests  # a dependency of fhirpy, used only to see the raw status after delete
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

IDENTIFIER_SYSTEM = "http://hearth.example.org/test/fhirpy"


def step(message):
    print(f"- {message}", flush=True)


def run(base_url):
    client = SyncFHIRClient(base_url)
    value = f"fhirpy-{uuid.uuid4()}"
    token = f"{IDENTIFIER_SYSTEM}|{value}"

    # Create (POST Patient)
    patient = client.resource(
        "Patient",
        identifier=[{"system": IDENTIFIER_SYSTEM, "value": value}],
        name=[{"family": "Fhirpy", "given": ["Casey"]}],
        gender="female",
    )
    patient.save()
    pid = patient.id
    assert pid, f"create: the server returned no id: {dict(patient)}"
    version = patient.get("meta", {}).get("versionId")
    assert version == "1", f"create: expected meta.versionId '1', got {version!r}"
    step(f"created Patient/{pid} (versionId {version}, identifier {token})")

    # Read (GET Patient/id)
    read = client.reference("Patient", pid).to_resource()
    assert read.resourceType == "Patient", f"read: got resourceType {read.resourceType!r}"
    assert read.id == pid, f"read: asked for {pid}, got id {read.id!r}"
    assert read["name"][0]["family"] == "Fhirpy", f"read: unexpected name {read.get('name')!r}"
    assert read["identifier"][0]["value"] == value, f"read: unexpected identifier {read.get('identifier')!r}"
    assert read["meta"]["versionId"] == "1", f"read: expected versionId '1', got {read['meta'].get('versionId')!r}"
    step(f"read Patient/{pid}: name {read['name'][0]['given'][0]} {read['name'][0]['family']}")

    # Update (PUT Patient/id)
    read["name"] = [{"family": "Fhirpy-Updated", "given": ["Casey", "Jo"]}]
    read["birthDate"] = "1990-04-12"
    read.save()
    version = read.get("meta", {}).get("versionId")
    assert version == "2", f"update: expected meta.versionId '2' in the response, got {version!r}"
    again = client.get("Patient", pid)
    assert again["meta"]["versionId"] == "2", f"update: re-read shows versionId {again['meta'].get('versionId')!r}"
    assert again.get("birthDate") == "1990-04-12", f"update: re-read shows birthDate {again.get('birthDate')!r}"
    assert again["name"][0]["family"] == "Fhirpy-Updated", f"update: re-read shows name {again.get('name')!r}"
    step(f"updated Patient/{pid}: versionId 2, birthDate {again['birthDate']}, family {again['name'][0]['family']}")

    # Search by identifier (GET Patient?identifier=system|value)
    found = client.resources("Patient").search(identifier=token).fetch()
    ids = [r.id for r in found]
    assert ids == [pid], f"search identifier={token}: expected [{pid!r}], got {ids!r}"
    assert found[0].get("birthDate") == "1990-04-12", "search: the match is not the current version"
    other = client.resources("Patient").search(identifier=f"{IDENTIFIER_SYSTEM}|no-such-{uuid.uuid4()}").fetch()
    assert other == [], f"search for an unknown identifier: expected no match, got {[r.id for r in other]!r}"
    step(f"search identifier={token}: 1 match ({pid}); an unknown identifier: 0 matches")

    # Delete (DELETE Patient/id)
    client.delete("Patient", pid)
    step(f"deleted Patient/{pid}")

    # Read after delete: fhirpy raises ResourceNotFound for 404 and 410; the server should say 410 Gone.
    try:
        gone = client.reference("Patient", pid).to_resource()
    except ResourceNotFound:
        pass
    else:
        raise AssertionError(f"read after delete: expected an error, got {dict(gone)!r}")
    status = requests.get(f"{base_url.rstrip('/')}/Patient/{pid}",
                          headers={"Accept": "application/fhir+json"}, timeout=30).status_code
    assert status == 410, f"read after delete: expected HTTP 410 Gone, got {status}"
    step(f"read Patient/{pid} after delete: ResourceNotFound (HTTP {status})")

    after = client.resources("Patient").search(identifier=token).fetch()
    assert after == [], f"search after delete: expected no match, got {[r.id for r in after]!r}"
    step("search after delete: 0 matches")


def main():
    base_url = os.environ.get("HEARTH_BASE_URL")
    if not base_url:
        print("fhirpy_crud: set HEARTH_BASE_URL, e.g. http://127.0.0.1:8080/fhir", file=sys.stderr)
        return 2
    print(f"fhirpy CRUD test against {base_url}")
    try:
        run(base_url)
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - connection errors, OperationOutcome from the server, ...
        traceback.print_exc()
        print("FAIL: unexpected error (see above)", file=sys.stderr)
        return 2
    print("fhirpy CRUD test: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
