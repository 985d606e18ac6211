"""The LoadTest API (group kubeload.dev, version v1alpha1): the single source of truth.

The CRD in `crds/` and the README's spec reference are generated from these models; field
docstrings are the documentation. Every string, number, list and map is bounded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from .base import ApiModel, Rule
from .durations import DURATION_PATTERN, parse_duration
from .status import LoadTestStatus
from .thresholds import CONDITION_PATTERN, METRIC_PATTERN, parse_condition, parse_metric

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "VERSION",
    "Auth",
    "Cleanup",
    "Credential",
    "Expect",
    "Load",
    "LoadTest",
    "LoadTestSpec",
    "Metadata",
    "Redis",
    "RequestSpec",
    "SecretKeyRef",
    "Stage",
    "Target",
    "Threshold",
    "Timeouts",
    "Workers",
]

GROUP = "kubeload.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LoadTest"

# Bounds shared by many fields.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$"
# Header values: no control characters (a newline would smuggle a second header).
HEADER_VALUE_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"
PERCENT_OR_DURATION_PATTERN = r"^(([0-9]{1,2}(\.[0-9]+)?%)|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"
MAX_VUS = 1_000_000
MAX_RATE = 10_000_000

Duration = Annotated[str, Field(max_length=32, pattern=DURATION_PATTERN)]
HeaderName = Annotated[str, Field(max_length=128, pattern=HEADER_NAME_PATTERN)]
HeaderValue = Annotated[str, Field(max_length=4096, pattern=HEADER_VALUE_PATTERN)]
Headers = Annotated[dict[HeaderName, HeaderValue], Field(max_length=64)]
K8sName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
EnvName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# A Kubernetes object passed through unchanged (the API server checks it where it lands).
PassThrough = Annotated[
    dict[str, Any], Field(max_length=64, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
]
LabelMap = Annotated[
    dict[Annotated[str, Field(max_length=317)], Annotated[str, Field(max_length=4096)]], Field(max_length=64)
]

_POSITIVE_DURATION = "self.matches('[1-9]')"  # at least one non-zero digit: 0s, 0.0m are refused


def _positive(value: str | None) -> bool:
    return value is None or parse_duration(value) > 0


class SecretKeyRef(ApiModel):
    """A key of a Secret in the LoadTest's namespace."""

    name: K8sName
    """Secret name."""
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
    """Key within the Secret."""


class Credential(ApiModel):
    """A secret value: exactly one of `value`, `secretKeyRef` or `env`."""

    value: Annotated[str, Field(max_length=4096)] | None = None
    """The value inline. Convenient for local runs; prefer `secretKeyRef` in clusters."""
    secret_key_ref: SecretKeyRef | None = None
    """Read from a Secret (mounted as an environment variable in pods)."""
    env: EnvName | None = None
    """Read from this environment variable of the process (local mode)."""

    rules = (
        Rule(
            cel="(has(self.value) ? 1 : 0) + (has(self.secretKeyRef) ? 1 : 0) + (has(self.env) ? 1 : 0) == 1",
            message="set exactly one of value, secretKeyRef or env",
            check=lambda c: sum(x is not None for x in (c.value, c.secret_key_ref, c.env)) == 1,
        ),
    )


class Target(ApiModel):
    """The system under test."""

    base_url: Annotated[str, Field(alias="baseURL", max_length=2048, pattern=r"^https?://[^\s/?#]+[^\s]*$")]
    """Base URL every request path is appended to, `http://` or `https://`. Required."""
    timeout: Duration = "10s"
    """Per-request timeout; a request that takes longer fails with reason `timeout`."""
    headers: Headers = Field(default_factory=dict)
    """Headers sent with every request."""
    insecure_skip_tls_verify: bool = Field(False, alias="insecureSkipTLSVerify")
    """Skip TLS certificate verification (for self-signed staging endpoints). Default false."""

    rules = (
        Rule(
            cel="!has(self.timeout) || " + _POSITIVE_DURATION.replace("self", "self.timeout"),
            message="timeout must be positive",
            check=lambda t: _positive(t.timeout),
            field="timeout",
        ),
    )


class Expect(ApiModel):
    """What counts as a successful response."""

    status: Annotated[list[Annotated[int, Field(ge=100, le=599)]], Field(max_length=64)] = Field(default_factory=list)
    """Accepted status codes. Empty (the default) accepts 200-399, as k6 does."""

    def accepts(self, code: int) -> bool:
        return code in self.status if self.status else 200 <= code <= 399


class RequestSpec(ApiModel):
    """One kind of request; each iteration picks one by weight."""

    name: Annotated[str, Field(max_length=63, pattern=NAME_PATTERN)]
    """Name used in metrics and thresholds (`http_req_duration{name:<name>}`)."""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    """HTTP method."""
    path: Annotated[str, Field(max_length=2048, pattern=r"^/[^\s]*$")] = "/"
    """Path (and query) appended to `target.baseURL`; starts with `/`."""
    weight: Annotated[int, Field(ge=1, le=1000)] = 1
    """Relative weight when picking a request for an iteration."""
    headers: Headers = Field(default_factory=dict)
    """Headers of this request, added to `target.headers`."""
    body: Annotated[str, Field(max_length=65536)] | None = None
    """Raw request body. At most one of `body` and `json`."""
    json_body: PassThrough | None = Field(None, alias="json")
    """A JSON object sent as the body (with `Content-Type: application/json`). At most one of `body`
    and `json`."""
    expect: Expect = Field(default_factory=Expect)
    """Accepted responses; anything else counts in `http_req_failed` with reason `status`."""

    rules = (
        Rule(
            cel="!(has(self.body) && has(self.json))",
            message="set at most one of body and json",
            check=lambda r: r.body is None or r.json_body is None,
            field="json",
        ),
    )


class Stage(ApiModel):
    """A stage of a ramping executor: move linearly to `target` over `duration`."""

    duration: Duration
    """How long the stage lasts; must be positive."""
    target: Annotated[int, Field(ge=0, le=MAX_RATE)]
    """VUs (ramping-vus) or iterations per `timeUnit` (ramping-arrival-rate) at the stage's end."""
    name: Annotated[str, Field(max_length=63, pattern=NAME_PATTERN)] | None = None
    """Optional name shown in status and progress (default `stage-<n>`)."""

    rules = (
        Rule(
            cel=_POSITIVE_DURATION.replace("self", "self.duration"),
            message="a stage's duration must be positive",
            check=lambda s: _positive(s.duration),
            field="duration",
        ),
    )


Executor = Literal["constant-vus", "ramping-vus", "constant-arrival-rate", "ramping-arrival-rate"]


def _is_arrival(executor: str) -> bool:
    return executor.endswith("arrival-rate")


class Load(ApiModel):
    """The load model, after k6's executors."""

    executor: Executor = "constant-vus"
    """`constant-vus`, `ramping-vus` (closed model) or `constant-arrival-rate`,
    `ramping-arrival-rate` (open model: iterations start on a schedule, independent of responses)."""
    vus: Annotated[int, Field(ge=1, le=MAX_VUS)] | None = None
    """constant-vus: number of VUs. Required there."""
    duration: Duration | None = None
    """constant-vus, constant-arrival-rate: how long the test runs. Required there."""
    start_vus: Annotated[int, Field(alias="startVUs", ge=0, le=MAX_VUS)] = 0
    """ramping-vus: VUs at the start, before the first stage."""
    stages: Annotated[list[Stage], Field(max_length=100)] = Field(default_factory=list)
    """ramping-vus, ramping-arrival-rate: the stages, at least one."""
    rate: Annotated[int, Field(ge=1, le=MAX_RATE)] | None = None
    """constant-arrival-rate: iterations started per `timeUnit`. Required there."""
    start_rate: Annotated[int, Field(ge=0, le=MAX_RATE)] = 0
    """ramping-arrival-rate: rate at the start, before the first stage."""
    time_unit: Duration = "1s"
    """arrival-rate: the period `rate` and stage targets refer to."""
    pre_allocated_vus: Annotated[int, Field(ge=0, le=MAX_VUS)] | None = Field(None, alias="preAllocatedVUs")
    """arrival-rate: VUs created up front (default: `maxVUs`, or 100)."""
    max_vus: Annotated[int, Field(ge=1, le=MAX_VUS)] | None = Field(None, alias="maxVUs")
    """arrival-rate: the most VUs that may run iterations at once; an iteration due when all
    are busy is dropped and counted in `dropped_iterations`. ramping-vus: a cap for the stages."""
    think_time: Duration = "0s"
    """Pause between two iterations of one VU (closed model)."""
    graceful_ramp_down: Duration = "30s"
    """ramping-vus: time a retired VU has to finish its current iteration."""
    graceful_stop: Duration = "30s"
    """Time in-flight iterations have to finish at the end or on abort."""

    rules = (
        Rule(
            cel="!(self.executor == 'constant-vus') || (has(self.vus) && has(self.duration))",
            message="constant-vus needs vus and duration",
            check=lambda m: m.executor != "constant-vus" or (m.vus is not None and m.duration is not None),
            field="vus",
        ),
        Rule(
            cel="!(self.executor == 'constant-arrival-rate') || (has(self.rate) && has(self.duration))",
            message="constant-arrival-rate needs rate and duration",
            check=lambda m: m.executor != "constant-arrival-rate" or (m.rate is not None and m.duration is not None),
            field="rate",
        ),
        Rule(
            cel="!self.executor.startsWith('ramping') || (has(self.stages) && size(self.stages) > 0)",
            message="ramping executors need at least one stage",
            check=lambda m: not m.executor.startswith("ramping") or len(m.stages) > 0,
            field="stages",
        ),
        Rule(
            cel="!has(self.duration) || " + _POSITIVE_DURATION.replace("self", "self.duration"),
            message="duration must be positive",
            check=lambda m: _positive(m.duration),
            field="duration",
        ),
        Rule(
            cel="!has(self.maxVUs) || !has(self.startVUs) || self.startVUs <= self.maxVUs",
            message="startVUs must not exceed maxVUs",
            check=lambda m: m.max_vus is None or m.start_vus <= m.max_vus,
            field="startVUs",
        ),
        Rule(
            cel="!has(self.maxVUs) || !has(self.preAllocatedVUs) || self.preAllocatedVUs <= self.maxVUs",
            message="preAllocatedVUs must not exceed maxVUs",
            check=lambda m: m.max_vus is None or m.pre_allocated_vus is None or m.pre_allocated_vus <= m.max_vus,
            field="preAllocatedVUs",
        ),
        Rule(
            cel="self.executor != 'ramping-vus' || !has(self.maxVUs) || !has(self.stages) "
            "|| self.stages.all(s, s.target <= self.maxVUs)",
            message="a ramping-vus stage target must not exceed maxVUs",
            check=lambda m: (
                m.executor != "ramping-vus" or m.max_vus is None or all(s.target <= m.max_vus for s in m.stages)
            ),
            field="stages",
        ),
        Rule(
            cel="!has(self.timeUnit) || " + _POSITIVE_DURATION.replace("self", "self.timeUnit"),
            message="timeUnit must be positive",
            check=lambda m: _positive(m.time_unit),
            field="timeUnit",
        ),
    )

    @property
    def is_arrival_rate(self) -> bool:
        return _is_arrival(self.executor)


Grant = Literal["client_credentials", "refresh_token", "password", "request"]


class TokenRequest(ApiModel):
    """grant `request`: any HTTP request that returns a JSON document holding the token.
    `{{clientID}}`, `{{clientSecret}}`, `{{username}}`, `{{password}}` and `{{refreshToken}}` in
    `url`, `headers` and `body` are replaced by the credentials, so no secret needs to be inline."""

    method: Literal["GET", "POST", "PUT", "PATCH"] = "POST"
    """HTTP method."""
    url: Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s]+$")]
    """Absolute URL."""
    headers: Headers = Field(default_factory=dict)
    """Request headers."""
    body: Annotated[str, Field(max_length=65536)] = ""
    """Request body."""


class Auth(ApiModel):
    """The shared token: obtained and renewed by one refresher, used by every VU."""

    grant: Grant = "client_credentials"
    """`client_credentials`, `refresh_token`, `password` (OAuth2 token endpoint at `tokenURL`)
    or `request` (any request, see `request`)."""
    token_url: Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s]+$")] | None = Field(
        None, alias="tokenURL"
    )
    """OAuth2 token endpoint. Required by every grant but `request`."""
    client_id: Credential | None = Field(None, alias="clientID")
    """OAuth2 client id (client_credentials; optional for refresh_token and password)."""
    client_secret: Credential | None = None
    """OAuth2 client secret."""
    client_auth: Literal["body", "basic"] = "body"
    """How the client authenticates: `body` (form fields) or `basic` (HTTP Basic)."""
    username: Credential | None = None
    """grant password: the resource owner's user name."""
    password: Credential | None = None
    """grant password: the resource owner's password."""
    refresh_token: Credential | None = None
    """grant refresh_token: the initial refresh token; a rotated one replaces it."""
    scope: Annotated[str, Field(max_length=1024)] = ""
    """OAuth2 scope (space separated); empty sends none."""
    audience: Annotated[str, Field(max_length=1024)] = ""
    """OAuth2 audience parameter; empty sends none."""
    request: TokenRequest | None = None
    """grant request: the request that returns the token."""
    token_path: Annotated[str, Field(max_length=256, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")] = "access_token"
    """Dotted path to the token in the JSON response."""
    expires_in_path: Annotated[str, Field(max_length=256, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")] = (
        "expires_in"
    )
    """Dotted path to the lifetime in seconds in the JSON response."""
    lifetime: Duration = "5m"
    """Lifetime assumed when the response carries none at `expiresInPath`."""
    refresh_before: Annotated[str, Field(max_length=32, pattern=PERCENT_OR_DURATION_PATTERN)] = "20%"
    """Refresh when this share of the lifetime (`20%`) or this time (`30s`) is left."""
    header: HeaderName = "Authorization"
    """Request header that carries the token."""
    scheme: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9._~+/-]*$")] = "Bearer"
    """Scheme before the token in `header`; empty sends the bare token."""
    replicas: Annotated[int, Field(ge=1, le=2)] = 1
    """Refresher replicas; 2 runs a standby that takes over through a Redis lease."""
    on_expired: Literal["Fail", "Continue"] = "Fail"
    """When the token expires with no replacement: `Fail` the test with a clear reason, or
    `Continue` (requests then fail with 401 and are counted)."""

    rules = (
        Rule(
            cel="self.grant == 'request' || has(self.tokenURL)",
            message="this grant needs tokenURL",
            check=lambda a: a.grant == "request" or a.token_url is not None,
            field="tokenURL",
        ),
        Rule(
            cel="self.grant != 'request' || has(self.request)",
            message="grant request needs request",
            check=lambda a: a.grant != "request" or a.request is not None,
            field="request",
        ),
        Rule(
            cel="self.grant != 'client_credentials' || (has(self.clientID) && has(self.clientSecret))",
            message="grant client_credentials needs clientID and clientSecret",
            check=lambda a: (
                a.grant != "client_credentials" or (a.client_id is not None and a.client_secret is not None)
            ),
            field="clientSecret",
        ),
        Rule(
            cel="self.grant != 'password' || (has(self.username) && has(self.password))",
            message="grant password needs username and password",
            check=lambda a: a.grant != "password" or (a.username is not None and a.password is not None),
            field="password",
        ),
        Rule(
            cel="self.grant != 'refresh_token' || has(self.refreshToken)",
            message="grant refresh_token needs refreshToken",
            check=lambda a: a.grant != "refresh_token" or a.refresh_token is not None,
            field="refreshToken",
        ),
        Rule(
            cel="!has(self.lifetime) || " + _POSITIVE_DURATION.replace("self", "self.lifetime"),
            message="lifetime must be positive",
            check=lambda a: _positive(a.lifetime),
            field="lifetime",
        ),
    )

    def credentials(self) -> dict[str, Credential]:
        """The credentials that are set, by their wire name."""
        named = {
            "clientID": self.client_id,
            "clientSecret": self.client_secret,
            "username": self.username,
            "password": self.password,
            "refreshToken": self.refresh_token,
        }
        return {name: cred for name, cred in named.items() if cred is not None}


class Toleration(ApiModel):
    """A Kubernetes toleration."""

    key: Annotated[str, Field(max_length=317)] | None = None
    """Taint key; empty with `Exists` tolerates everything."""
    operator: Literal["Exists", "Equal"] | None = None
    """`Exists` or `Equal` (default)."""
    value: Annotated[str, Field(max_length=63)] | None = None
    """Taint value for `Equal`."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect; empty matches all."""
    toleration_seconds: Annotated[int, Field(ge=0, le=86400 * 365)] | None = None
    """For `NoExecute`: how long the pod stays bound after the taint appears."""


class ResourceRequirements(ApiModel):
    """CPU and memory for a container, as in Kubernetes (`{limits: {cpu: "1"}}`)."""

    limits: Annotated[
        dict[
            Literal["cpu", "memory", "ephemeral-storage"],
            Annotated[str, Field(max_length=32, pattern=r"^[0-9.]+[A-Za-z]*$")],
        ],
        Field(max_length=3),
    ] = Field(default_factory=dict)
    """Upper bounds, e.g. `{cpu: "1", memory: 512Mi}`."""
    requests: Annotated[
        dict[
            Literal["cpu", "memory", "ephemeral-storage"],
            Annotated[str, Field(max_length=32, pattern=r"^[0-9.]+[A-Za-z]*$")],
        ],
        Field(max_length=3),
    ] = Field(default_factory=dict)
    """What the scheduler reserves, e.g. `{cpu: 500m, memory: 256Mi}`."""

    rules = (
        Rule(
            cel="!has(self.requests) || size(self.requests) == 0 || (has(self.limits) && size(self.limits) > 0)",
            message="set limits too when setting requests: worker pods always run with limits",
            check=lambda r: not r.requests or bool(r.limits),
            field="limits",
        ),
    )


class EnvVar(ApiModel):
    """An environment variable for the worker pods: a `value` or a `secretKeyRef`."""

    name: EnvName
    """Variable name."""
    value: Annotated[str, Field(max_length=32768)] | None = None
    """Literal value."""
    secret_key_ref: SecretKeyRef | None = None
    """Value from a Secret key."""

    rules = (
        Rule(
            cel="!(has(self.value) && has(self.secretKeyRef))",
            message="set at most one of value and secretKeyRef",
            check=lambda e: e.value is None or e.secret_key_ref is None,
        ),
    )


class LocalObjectRef(ApiModel):
    """A ConfigMap or Secret in the LoadTest's namespace."""

    name: K8sName
    """Object name."""
    optional: bool | None = None
    """Start the pods even when the object is missing."""


class EnvFromSource(ApiModel):
    """Environment variables from a whole ConfigMap or Secret."""

    prefix: Annotated[str, Field(max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    """Prefix added to every variable name."""
    config_map_ref: LocalObjectRef | None = None
    """Every key of this ConfigMap."""
    secret_ref: LocalObjectRef | None = None
    """Every key of this Secret."""

    rules = (
        Rule(
            cel="has(self.configMapRef) != has(self.secretRef)",
            message="set exactly one of configMapRef and secretRef",
            check=lambda e: (e.config_map_ref is None) != (e.secret_ref is None),
        ),
    )


class Affinity(ApiModel):
    """Pod affinity, as in a pod spec; each part is passed through to the worker pods unchanged."""

    node_affinity: PassThrough | None = None
    """Node affinity rules."""
    pod_affinity: PassThrough | None = None
    """Pod affinity rules."""
    pod_anti_affinity: PassThrough | None = None
    """Pod anti-affinity rules, e.g. to spread workers over nodes."""


class Workers(ApiModel):
    """The worker pods that run the VUs."""

    vus_per_worker: Annotated[int, Field(ge=1, le=100_000)] = 200
    """VUs one worker pod runs at most; the operator runs ceil(target / vusPerWorker) pods."""
    max_workers: Annotated[int, Field(ge=1, le=1000)] = 10
    """The most worker pods at once (the Job's parallelism cap)."""
    processes_per_worker: Annotated[int, Field(ge=0, le=64)] = 1
    """Processes per pod, each with one event loop; 0 = one per CPU of the pod's limit."""
    image: Annotated[str, Field(max_length=512, pattern=r"^[^\s]*$")] = ""
    """Worker image; empty uses the operator's configured worker image."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """Image pull policy of the worker pods."""
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    """Resources of each worker container (default: the operator's configured default)."""
    node_selector: LabelMap = Field(default_factory=dict)
    """Node selector of the worker pods."""
    tolerations: Annotated[list[Toleration], Field(max_length=32)] = Field(default_factory=list)
    """Tolerations of the worker pods."""
    affinity: Affinity = Field(default_factory=Affinity)
    """Affinity of the worker pods, as in a pod spec (passed through unchanged)."""
    env: Annotated[list[EnvVar], Field(max_length=64)] = Field(default_factory=list)
    """Extra environment variables of the workers."""
    env_from: Annotated[list[EnvFromSource], Field(max_length=16)] = Field(default_factory=list)
    """Environment from ConfigMaps or Secrets."""
    pod_labels: LabelMap = Field(default_factory=dict)
    """Extra labels on the worker pods."""
    pod_annotations: LabelMap = Field(default_factory=dict)
    """Extra annotations on the worker pods."""
    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 3
    """How many failed worker pods are replaced before the test fails."""


class Redis(ApiModel):
    """Where the run's shared state lives."""

    url: Annotated[str, Field(max_length=2048, pattern=r"^(rediss?://[^\s]+)?$")] = ""
    """External Redis (`redis://host:6379/0`); empty = the operator deploys one (local mode:
    an embedded redis-server)."""
    password_secret_ref: SecretKeyRef | None = None
    """Password of the external Redis."""


class Threshold(ApiModel):
    """A pass/fail criterion judged on the merged data of the whole fleet, in k6's syntax."""

    metric: Annotated[str, Field(max_length=128, pattern=METRIC_PATTERN)]
    """Metric name, optionally filtered by request name: `http_req_duration{name:login}`."""
    condition: Annotated[str, Field(max_length=64, pattern=CONDITION_PATTERN)]
    """`<aggregation><op><number>`: `p(95)<500` (ms), `avg<200`, `rate<0.01`, `count>100`."""
    abort_on_fail: bool = False
    """Stop the whole test as soon as the threshold fails."""
    delay_abort_eval: Duration = "0s"
    """With `abortOnFail`: do not judge for abort before this much of the test has run."""

    @field_validator("condition")
    @classmethod
    def _condition_fits_metric(cls, condition: str, info: Any) -> str:
        metric = info.data.get("metric")
        if metric is not None:
            parse_condition(metric, condition)  # ThresholdSyntaxError is a ValueError
        return condition

    @field_validator("metric")
    @classmethod
    def _metric_known(cls, metric: str) -> str:
        parse_metric(metric)
        return metric


class Cleanup(ApiModel):
    """What happens to the children (Redis, refresher, workers) after the end."""

    policy: Literal["Never", "OnSuccess", "Always"] = "OnSuccess"
    """Delete the children `Never`, `OnSuccess` (keep them to debug a failure) or `Always`.
    The LoadTest and its summary ConfigMap stay."""
    ttl_seconds_after_finished: Annotated[int, Field(ge=0, le=86400 * 365)] | None = None
    """Delete the LoadTest itself (and so everything) this long after it finished."""


class Timeouts(ApiModel):
    """Bounds on phases that could otherwise hang."""

    provisioning: Duration = "5m"
    """Redis, the token and the workers must be ready within this time, or the test fails."""


class LoadTestSpec(ApiModel):
    """The desired load test."""

    target: Target
    """The system under test. Required."""
    requests: Annotated[list[RequestSpec], Field(min_length=1, max_length=100)]
    """The requests, at least one; each iteration picks one by weight."""
    load: Load
    """The load model. Required."""
    auth: Auth | None = None
    """The shared token; omit for an API without authentication."""
    workers: Workers = Field(default_factory=Workers)
    """Worker pods."""
    redis: Redis = Field(default_factory=Redis)
    """Shared state."""
    thresholds: Annotated[list[Threshold], Field(max_length=50)] = Field(default_factory=list)
    """Pass/fail criteria; the verdict fails when any fails."""
    cleanup: Cleanup = Field(default_factory=Cleanup)
    """Cleanup after the end."""
    timeouts: Timeouts = Field(default_factory=Timeouts)
    """Phase timeouts."""
    abort: bool = False
    """Set to true to stop a running test; it ends `Aborted` (same as the annotation
    `kubeload.dev/abort=true`)."""

    rules = (
        Rule(
            cel="self.requests.all(r, self.requests.exists_one(o, o.name == r.name))",
            message="request names must be unique",
            check=lambda s: len({r.name for r in s.requests}) == len(s.requests),
            field="requests",
        ),
    )


class Metadata(ApiModel):
    """Object metadata (the parts kubeload reads)."""

    # Server-set metadata (resourceVersion, managedFields, ...) is not kubeload's business.
    model_config = ConfigDict(**{**ApiModel.model_config, "extra": "ignore"})

    name: Annotated[str, Field(min_length=1, max_length=40, pattern=DNS_LABEL_PATTERN)]
    """LoadTest name: a DNS label of at most 40 characters (children's names derive from it)."""
    namespace: Annotated[str, Field(max_length=63, pattern=DNS_LABEL_PATTERN)] | None = None
    labels: LabelMap = Field(default_factory=dict)
    annotations: LabelMap = Field(default_factory=dict)
    uid: Annotated[str, Field(max_length=64)] | None = None
    generation: int | None = None


class LoadTest(ApiModel):
    """A load test: one manifest for `kubectl apply` and `kubeload run`."""

    api_version: Literal["kubeload.dev/v1alpha1"] = Field("kubeload.dev/v1alpha1", alias="apiVersion")
    kind: Literal["LoadTest"] = "LoadTest"
    metadata: Metadata
    spec: LoadTestSpec
    status: LoadTestStatus | None = None
