"""`helm test` of the kubeload chart: the LoadTest CRD is established and the operator is live.

Run by the test Pod as `python -c <this file>` (standard library only), with its ServiceAccount
token. Every input is an environment variable, so the e2e suite runs the very same command as
a local process against the test control plane:

  KUBELOAD_TEST_CRD           CRD name (loadtests.kubeload.dev)
  KUBELOAD_TEST_LIVENESS_URL  the operator's liveness URL (through the chart's Service)
  KUBELOAD_TEST_TIMEOUT       seconds to keep retrying (default 60)
  KUBELOAD_TEST_API_SERVER    API server URL (default: https://$KUBERNETES_SERVICE_HOST:$..._PORT)
  KUBELOAD_TEST_TOKEN_FILE    bearer token file (default: the Pod's ServiceAccount token)
  KUBELOAD_TEST_CA_FILE       CA bundle of the API server (default: the Pod's ServiceAccount CA)
Exit code 0 when both checks pass, 1 otherwise.
"""

import json
import os
import ssl
import sys
import time
import urllib.request

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def api_server():
    explicit = os.environ.get("KUBELOAD_TEST_API_SERVER")
    if explicit:
        return explicit.rstrip("/")
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    if ":" in host:
        host = "[" + host + "]"
    return "https://" + host + ":" + os.environ.get("KUBERNETES_SERVICE_PORT", "443")


def crd_established(name):
    token_file = os.environ.get("KUBELOAD_TEST_TOKEN_FILE", SA_DIR + "/token")
    ca_file = os.environ.get("KUBELOAD_TEST_CA_FILE", SA_DIR + "/ca.crt")
    with open(token_file, encoding="utf-8") as handle:
        token = handle.read().strip()
    url = api_server() + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + name
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    context = ssl.create_default_context(cafile=ca_file)
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        crd = json.load(response)
    conditions = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
    if conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True":
        return None
    return "conditions " + json.dumps(conditions, sort_keys=True)


def operator_live(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        if response.status == 200:
            return None
        return "HTTP " + str(response.status)


def main():
    crd = os.environ.get("KUBELOAD_TEST_CRD", "loadtests.kubeload.dev")
    liveness = os.environ["KUBELOAD_TEST_LIVENESS_URL"]
    deadline = time.monotonic() + float(os.environ.get("KUBELOAD_TEST_TIMEOUT", "60"))
    checks = [("CRD " + crd + " established", crd_established, crd),
              ("operator live at " + liveness, operator_live, liveness)]
    for title, check, argument in checks:
        while True:
            try:
                problem = check(argument)
            except (OSError, ValueError, KeyError) as exc:  # URLError and HTTPError are OSErrors
                problem = type(exc).__name__ + ": " + str(exc)
            if problem is None:
                print("ok: " + title, flush=True)
                break
            if time.monotonic() >= deadline:
                print("FAILED: " + title + ": " + problem, flush=True)
                return 1
            time.sleep(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
