#!/usr/bin/env python3
"""SMART standalone launch against a running Hearth server with the Python SMART client
fhirclient: authorize URL (with PKCE) from the client, the login / patient picker / consent
pages posted here as a browser would, then the client's own callback handling, token
exchange, a Patient read with its models, and a refresh.

    pip install -r tests/clients/requirements.txt
    HEARTH_BASE_URL=http://127.0.0.1:8080/fhir HEARTH_CLIENT_ID=app \
    HEARTH_REDIRECT_URI=http://localhost:9000/callback HEARTH_USERNAME=alice \
    HEARTH_PASSWORD=... HEARTH_PATIENT=p1 HEARTH_PATIENT_NAME=Ward \
    python3 tests/clients/fhirclient_launch.py

Exits 0 on success, 1 on a mismatch, 2 on an unexpected error.
"""
import os
import re
import sys
import traceback
from urllib.parse import urljoin

import requests
from fhirclient import client
from fhirclient.models.patient import Patient


def step(message):
    print(f"- {message}", flush=True)


def pending_id(html):
    m = re.search(r'name="pending" value="([^"]+)"', html)
    assert m, f"no pending request id in the page: {html[:500]}"
    return m.group(1)


def run(env):
    settings = {
        "app_id": env["HEARTH_CLIENT_ID"],
        "api_base": env["HEARTH_BASE_URL"],
        "redirect_uri": env["HEARTH_REDIRECT_URI"],
        "scope": "openid fhirUser offline_access patient/*.rs user/Patient.rs",
    }
    smart = client.FHIRClient(settings=settings)
    url = smart.authorize_url
    assert "code_challenge=" in url and "aud=" in url, f"unexpected authorize URL {url}"
    step(f"authorize URL from fhirclient: {url.split('?')[0]}")

    browser = requests.Session()
    page = browser.get(url, allow_redirects=False)
    assert page.status_code == 200, f"authorize: {page.status_code} {page.text[:300]}"
    form_url = urljoin(url, "authorize")
    pid = pending_id(page.text)
    login = {"pending": pid, "step": "login", "username": env["HEARTH_USERNAME"], "password": env["HEARTH_PASSWORD"]}
    page = browser.post(form_url, data=login, allow_redirects=False)
    assert page.status_code == 200, f"login: {page.status_code} {page.text[:300]}"
    step("logged in")
    if "Choose a patient" in page.text:
        search = {"pending": pid, "step": "patient", "name": env["HEARTH_PATIENT_NAME"]}
        page = browser.post(form_url, data=search, allow_redirects=False)
        assert env["HEARTH_PATIENT"] in page.text, f"picker search: {page.text[:500]}"
        choose = {"pending": pid, "step": "patient", "patient": env["HEARTH_PATIENT"]}
        page = browser.post(form_url, data=choose, allow_redirects=False)
        step(f"picked Patient/{env['HEARTH_PATIENT']}")
    assert "Allow access?" in page.text, f"expected the consent page: {page.text[:500]}"
    done = browser.post(form_url, data={"pending": pid, "step": "consent", "decision": "approve"}, allow_redirects=False)
    assert done.status_code == 302, f"consent: {done.status_code} {done.text[:300]}"
    callback = done.headers["Location"]
    assert callback.startswith(env["HEARTH_REDIRECT_URI"]), callback
    step("consent given; redirected with a code")

    smart.handle_callback(callback)
    assert smart.ready, "fhirclient is not ready after the callback"
    assert smart.patient_id == env["HEARTH_PATIENT"], f"launch patient {smart.patient_id!r}"
    step(f"token received; launch context patient {smart.patient_id}")

    patient = Patient.read(smart.patient_id, smart.server)
    assert patient.id == env["HEARTH_PATIENT"], f"read: {patient.id!r}"
    name = " ".join((patient.name[0].given or []) + [patient.name[0].family or ""])
    step(f"read Patient/{patient.id} with fhirclient's models: {name}")
    assert env["HEARTH_PATIENT_NAME"] in name, name

    old = smart.server.auth.access_token
    assert smart.reauthorize(), "refresh failed"
    assert smart.server.auth.access_token != old, "the refresh did not give a new access token"
    again = Patient.read(smart.patient_id, smart.server)
    assert again.id == patient.id
    step("refreshed the token and read again")


def main():
    env = os.environ
    try:
        run(env)
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 2
    print("fhirclient SMART launch: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
