"""Per-resource rules (IST0106), each tried on both sides of its boundary.

One case per place in ``reconciler/validate/rules/`` that emits a finding: the ``good`` values
sit just inside the rule (the last accepted number, length or form) and load with no finding at
all; the ``bad`` value sits just outside and is exactly one finding, with its severity, field
path, line and message. A rule that moved its boundary by one, or stopped firing, fails here.
"""

from __future__ import annotations

import dataclasses

import pytest
from validate_helpers import (
    DESTINATION_RULE,
    GATEWAY,
    SERVICE_ENTRY,
    Case,
    assert_bad_value_is_one_finding_at_its_field_and_line,
    assert_good_values_load_without_findings,
    join,
    load_text,
    server,
    virtual_service,
)

from reconciler.validate.findings import Severity
from reconciler.validate.rules.checker import dns1123_label_error, wildcard_domain_error

WARNING = Severity.WARNING
KB = 1024


def http(rule: str) -> str:
    """A VirtualService for ``reviews`` whose only HTTP rule is ``rule`` (YAML lines, 2-space indented)."""
    return virtual_service(rule)


def routed(extra: str) -> str:
    """An HTTP rule routing to ``reviews`` with ``extra`` (one YAML line) under it."""
    return http(f"- route:\n  - destination: {{host: reviews}}\n  {extra}")


def tls_route(
    sni: str = "[VALUE]", *, match: str = "", route: str = "route: [{destination: {host: api.example.com}}]"
) -> str:
    """A VirtualService for ``*.example.com`` with one TLS rule, and the ServiceEntry it routes to."""
    match = match or f"match: [{{sniHosts: {sni}}}]"
    return join(
        service_entry(ports="[{number: 443, name: tls, protocol: TLS}]"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: tls}\n"
        f'spec:\n  hosts: ["*.example.com"]\n  tls:\n  - {match}\n    {route}\n',
    )


def destination_rule(spec: str, *, name: str = "reviews") -> str:
    """A DestinationRule for ``reviews`` with ``spec`` lines (2-space indented) after ``host:``."""
    return (
        f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n"
        f"spec:\n  host: reviews\n{spec}"
    )


def policy(fields: str) -> str:
    """A DestinationRule with ``trafficPolicy: {fields}``."""
    return destination_rule(f"  trafficPolicy: {{{fields}}}\n")


def gateway(port: str = "{number: 80, name: http, protocol: HTTP}", *, hosts: str = '["*"]', tls: str = "") -> str:
    return GATEWAY + server(port, hosts=hosts, tls=tls)


def https_gateway(tls: str) -> str:
    return gateway("{number: 443, name: https, protocol: HTTPS}", tls=tls)


def service_entry(
    *,
    hosts: str = "[api.example.com]",
    resolution: str = "DNS",
    ports: str = "[{number: 80, name: http, protocol: HTTP}]",
    extra: str = "",
) -> str:
    """ServiceEntry ``api`` with these spec fields (YAML flow text) and ``extra`` lines."""
    return (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: api}\n"
        f"spec:\n  hosts: {hosts}\n  resolution: {resolution}\n  ports: {ports}\n{extra}"
    )


def bodies(size: int) -> str:
    return "x" * size


CASES: dict[str, Case] = {
    # VirtualService: hosts, gateways, exportTo ---------------------------------------------------
    "duplicate hosts": Case(
        virtual_service("- route:\n  - destination: {host: reviews}", hosts="[a.example.com, VALUE]"),
        good=("b.example.com", "a.example.org"),
        bad="a.example.com",
        marker="hosts:",
        path="spec.hosts[1]",
        message="duplicate hosts in virtual service: a.example.com & a.example.com",
    ),
    **{
        f"gateway reference: {name}": Case(
            join(
                gateway(),
                virtual_service("- route:\n  - destination: {host: reviews}", extra="  gateways: [VALUE]\n"),
            ),
            good=("mesh", "gw", "default/gw"),
            bad=bad,
            marker="gateways:",
            path="spec.gateways[0]",
            message=message,
            severity=severity,
            others=("IST0101",),  # and no such gateway
        )
        for name, bad, message, severity in [
            ("empty namespace", "/gw", "gateway namespace and name cannot be empty", Severity.ERROR),
            ("bad namespace", "Bad_NS/gw", "invalid value for namespace: 'Bad_NS'", Severity.ERROR),
            ("bad name", "default/Bad_gw", "invalid value for gateway name: 'Bad_gw'", Severity.ERROR),
            (
                "not a name",
                "bad_gw",
                "invalid gateway name: domain name 'bad_gw' invalid (label 'bad_gw' invalid)",
                Severity.ERROR,
            ),
            ("legacy format", "gw.default", "using legacy gatewayName format 'gw.default'", WARNING),
        ]
    },
    **{
        f"exportTo: {name}": Case(
            virtual_service("- route:\n  - destination: {host: reviews}", extra="  exportTo: VALUE\n"),
            good=(
                "['.']",
                "['*']",
                "[default]",
                "['.', other]",
                "[a-63-character-namespace-name-is-still-a-valid-dns-label-xxxxx]",
            ),
            bad=bad,
            path=path,
            message=message,
        )
        for name, bad, path, message in [
            (
                "public mixed with others",
                "['*', '.']",
                "spec.exportTo",
                "exportTo cannot mix public (*) with other entries",
            ),
            ("duplicate", "['.', default]", "spec.exportTo[1]", "duplicate entry 'default' in exportTo"),
            (
                "no one, on a VirtualService",
                "['~']",
                "spec.exportTo[0]",
                "exportTo '~' (visible to no one) is only allowed on ServiceEntries",
            ),
            (
                "not a namespace",
                "[Bad_NS]",
                "spec.exportTo[0]",
                "exportTo entry 'Bad_NS' is not '.', '*' or a namespace name",
            ),
            (
                "a 64-character namespace",
                "[a-64-character-namespace-name-is-not-a-valid-dns-label-anymore-x]",
                "spec.exportTo[0]",
                "exportTo entry 'a-64-character-namespace-name-is-not-a-valid-dns-label-anymore-x' "
                "is not '.', '*' or a namespace name",
            ),
        ]
    },
    "exportTo: no one and someone, on a ServiceEntry": Case(
        service_entry(extra="  exportTo: VALUE\n"),
        good=("['~']", "['.']", "['*']"),
        bad="['~', '.']",
        path="spec.exportTo",
        message="cannot export a ServiceEntry to no one (~) and someone",
    ),
    # TLS routes and SNI -----------------------------------------------------------------------------
    **{
        f"SNI host: {name}": Case(
            tls_route(),
            good=("api.example.com", "'*.example.com'", "a.b.example.com"),
            bad=bad,
            marker="sniHosts:",
            path="spec.tls[0].match[0].sniHosts[0]",
            message=message,
            severity=severity,
        )
        for name, bad, message, severity in [
            (
                "outside the hosts",
                "api.example.org",
                "SNI host 'api.example.org' is not a compatible subset of any of the virtual service hosts: "
                "[*.example.com]",
                Severity.ERROR,
            ),
            (
                "not a host name",
                "bad_host.example.com",
                "invalid SNI host: domain name 'bad_host.example.com' invalid (label 'bad_host' invalid)",
                Severity.ERROR,
            ),
            (
                "an IP address",
                "10.0.0.1",
                "using an IP address ('10.0.0.1') goes against the SNI spec; most clients do not send it",
                WARNING,
            ),
        ]
    },
    "TLS match without SNI hosts": Case(
        tls_route("VALUE"),
        good=("[api.example.com]",),
        bad="[]",
        marker="sniHosts:",
        path="spec.tls[0].match[0].sniHosts",
        message="TLS match must have at least one SNI host",
    ),
    "TLS route without match": Case(
        tls_route(match="VALUE"),
        good=("match: [{sniHosts: [api.example.com]}]",),
        bad="match: []",
        path="spec.tls[0]",
        message="TLS route must have at least one match condition",
    ),
    "TLS route without destination": Case(
        tls_route("[api.example.com]", route="VALUE"),
        good=("route: [{destination: {host: api.example.com}}]",),
        bad="route: []",
        marker="sniHosts:",
        path="spec.tls[0]",
        message="TLS route is required",
    ),
    # HTTP routes ------------------------------------------------------------------------------------
    **{
        f"redirect code {side}": Case(
            http("- redirect: {uri: /v2, redirectCode: VALUE}"),
            good=("300", "301", "308", "399"),
            bad=bad,
            marker="redirectCode",
            path="spec.http[0].redirect.redirectCode",
            message=f"{bad} is not a valid redirect code, must be 3xx",
            hint="use 301, 302, 303, 307 or 308",
        )
        for side, bad in (("below 3xx", "299"), ("above 3xx", "400"))
    },
    "redirect scheme": Case(
        http("- redirect: {uri: /v2, scheme: VALUE}"),
        good=("http", "https"),
        bad="ftp",
        path="spec.http[0].redirect.scheme",
        message='invalid redirect scheme, must be "http" or "https"',
    ),
    "redirect target": Case(
        http("- redirect: {VALUE}"),
        good=("uri: /v2", "authority: b.example.com", "port: 8080", "scheme: https"),
        bad="redirectCode: 301",
        path="spec.http[0].redirect",
        message="redirect must specify URI, authority, scheme, or port",
    ),
    **{
        f"{other} with {kind}": Case(
            http(f"- {kind}\n  VALUE"),
            good=("name: alone",),
            bad=bad,
            marker=kind.split(":")[0],
            path="spec.http[0]",
            message=f"HTTP route cannot contain both {other} and {kind.split(':')[0]}",
        )
        for kind in ("redirect: {uri: /v2}", "directResponse: {status: 503}")
        for other, bad in (("fault", "fault: {abort: {httpStatus: 500}}"), ("rewrite", "rewrite: {uri: /v3}"))
    },
    "rewrite target": Case(
        routed("rewrite: {VALUE}"),
        good=("uri: /v2", "authority: b.example.com"),
        bad="uri: ''",
        marker="rewrite:",
        path="spec.http[0].rewrite",
        message="rewrite must specify URI, authority, or both",
    ),
    **{
        f"direct response status {side}": Case(
            http("- directResponse: {status: VALUE}"),
            good=("200", "599"),
            bad=bad,
            marker="status:",
            path="spec.http[0].directResponse.status",
            message=f"HTTP status {bad} is not in range 200-599",
        )
        for side, bad in (("below 200", "199"), ("above 599", "600"))
    },
    **{
        f"direct response body of {name}": Case(
            http("- directResponse: {status: 200, body: {string: VALUE}}"),
            good=(bodies(100 * KB),),
            bad=bodies(size),
            marker="body:",
            path="spec.http[0].directResponse.body",
            message=message,
            severity=severity,
        )
        for name, size, message, severity in [
            ("100 KiB + 1", 100 * KB + 1, "large direct responses may impact control plane performance", WARNING),
            (
                "1 MiB (still a warning)",
                1024 * KB,
                "large direct responses may impact control plane performance",
                WARNING,
            ),
            ("1 MiB + 1", 1024 * KB + 1, "direct responses must be smaller than 1MB", Severity.ERROR),
        ]
    },
    **{
        f"perTryTimeout {name}": Case(
            routed("retries: {attempts: 3, perTryTimeout: VALUE}"),
            good=("1ms", "2s", "1.001s"),
            bad=bad,
            marker="perTryTimeout",
            path="spec.http[0].retries.perTryTimeout",
            message=message,
        )
        for name, bad, message in [
            ("under 1ms", "999us", "duration 999us must be at least 1ms"),
            ("zero", "0s", "duration 0s must be at least 1ms"),
            ("finer than 1ms", "1500us", "duration 1500us is finer than a millisecond; only ms precision is supported"),
        ]
    },
    "retries with zero attempts": Case(
        routed("retries: {attempts: VALUE, perTryTimeout: 2s}"),
        good=("1", "3"),
        bad="0",
        marker="attempts",
        path="spec.http[0].retries.attempts",
        message="http retry policy configured when attempts are set to 0 (disabled)",
    ),
    "retries without attempts": Case(
        routed("retries: {VALUE}"),
        good=("attempts: 1, retryOn: 5xx", "attempts: 1, perTryTimeout: 1s"),
        bad="retryOn: 5xx",
        path="spec.http[0].retries",
        message="http retry policy configured when attempts are set to 0 (disabled)",
    ),
    "retryOn": Case(
        routed("retries: {attempts: 1, retryOn: 'VALUE'}"),
        good=("5xx", "503", "reset,connect-failure", "retriable-status-codes,429"),
        bad="5xx,bogus",
        path="spec.http[0].retries.retryOn",
        message="'bogus' is not a valid retryOn policy",
    ),
    "retryOn: an unknown status code": Case(
        routed("retries: {attempts: 1, retryOn: 'VALUE'}"),
        good=("429",),
        bad="999",
        path="spec.http[0].retries.retryOn",
        message="'999' is not a valid retryOn policy",
    ),
    "a fault with neither abort nor delay": Case(
        routed("fault: VALUE"),
        good=("{abort: {httpStatus: 503}}", "{delay: {fixedDelay: 1s}}"),
        bad="{}",
        marker="fault:",
        path="spec.http[0].fault",
        message="HTTP fault injection must have an abort and/or a delay",
    ),
    **{
        f"fault abort status {side}": Case(
            routed("fault: {abort: {httpStatus: VALUE}}"),
            good=("200", "503", "599"),
            bad=bad,
            marker="httpStatus",
            path="spec.http[0].fault.abort.httpStatus",
            message=f"HTTP status {bad} is not in range 200-599",
        )
        for side, bad in (("below 200", "199"), ("above 599", "600"))
    },
    "fault delay under 1ms": Case(
        routed("fault: {delay: {fixedDelay: VALUE}}"),
        good=("1ms", "7s"),
        bad="999us",
        marker="fixedDelay",
        path="spec.http[0].fault.delay.fixedDelay",
        message="duration 999us must be at least 1ms",
    ),
    "fault delay percent over 100 (one error beside the deprecation warning is asserted below)": Case(
        routed("fault: {delay: {fixedDelay: 1s, percentage: {value: VALUE}}}"),
        good=("0", "0.0001", "100"),
        bad="0.00009",
        marker="percentage",
        path="spec.http[0].fault.delay.percentage.value",
        message="percentage 9e-05 is neither 0 nor in 0.0001..100",
    ),
    "mirror percentage": Case(
        routed("mirror: {host: shadow}\n  mirrorPercentage: {value: VALUE}"),
        good=("0", "0.0001"),
        bad="0.00009",
        marker="mirrorPercentage",
        path="spec.http[0].mirrorPercentage.value",
        message="percentage 9e-05 is neither 0 nor in 0.0001..100",
    ),
    "mirrors percentage": Case(
        routed("mirrors: [{destination: {host: shadow}, percentage: {value: VALUE}}]"),
        good=("0", "0.0001"),
        bad="0.00009",
        marker="mirrors:",
        path="spec.http[0].mirrors[0].percentage.value",
        message="percentage 9e-05 is neither 0 nor in 0.0001..100",
    ),
    # Destinations and headers ----------------------------------------------------------------------
    "destination host": Case(
        http("- route:\n  - destination: {host: VALUE}"),
        good=("reviews",),
        bad="bad_host",
        path="spec.http[0].route[0].destination.host",
        message="invalid destination host: domain name 'bad_host' invalid (label 'bad_host' invalid)",
    ),
    "destination subset": Case(
        join(
            SERVICE_ENTRY,
            DESTINATION_RULE,
            http("- route:\n  - destination: {host: reviews.shop.example.com, subset: VALUE}"),
        ),
        good=("v1", "v2"),
        bad="v1.0",
        others=("IST0101",),  # and no such subset
        path="spec.http[0].route[0].destination.subset",
        message="subset name is invalid: 'v1.0' is not a DNS-1123 label (letters, digits and '-', "
        "starting and ending with a letter or digit)",
    ),
    "destination port without a number": Case(
        http("- route:\n  - destination: {host: reviews, port: {VALUE}}"),
        good=("number: 9080",),
        bad="",
        marker="port:",
        path="spec.http[0].route[0].destination.port",
        message="destination port needs a number",
        hint="write `port: {number: 9080}`",
    ),
    "mirror destination host": Case(
        routed("mirror: {host: VALUE}"),
        good=("shadow",),
        bad="'*'",
        path="spec.http[0].mirror.host",
        message="invalid destination host *",
    ),
    "TCP route destination host": Case(
        http("- route:\n  - destination: {host: reviews}").replace(
            "  http:\n", "  tcp:\n  - route: [{destination: {host: VALUE}}]\n  http:\n"
        ),
        good=("reviews",),
        bad="bad_db",
        path="spec.tcp[0].route[0].destination.host",
        message="invalid destination host: domain name 'bad_db' invalid (label 'bad_db' invalid)",
    ),
    **{
        f"header: {message}": Case(
            routed(f"headers: {{{where}: VALUE}}"),
            good=("{set: {x-ok: '1'}}", "{add: {x-ok: '1'}}", "{remove: [x-old]}"),
            bad=bad,
            marker="headers:",
            path=path,
            message=message,
        )
        for where, bad, path, message in [
            (
                "response",
                "{set: {Host: x}}",
                "spec.http[0].headers.response.set.Host",
                "invalid header 'Host': cannot set Host header",
            ),
            (
                "response",
                "{remove: [Host]}",
                "spec.http[0].headers.response.remove[0]",
                "invalid header 'Host': cannot remove Host header",
            ),
            (
                "request",
                "{remove: [':authority']}",
                "spec.http[0].headers.request.remove[0]",
                "invalid header ':authority': header cannot have \":\" prefix",
            ),
            (
                "response",
                "{add: {host: x}}",
                "spec.http[0].headers.response.add.host",
                "invalid header 'host': cannot set Host header",
            ),
            (
                "response",
                "{remove: [':path']}",
                "spec.http[0].headers.response.remove[0]",
                "invalid header ':path': header cannot have \":\" prefix",
            ),
            (
                "request",
                "{add: {':path': /x}}",
                'spec.http[0].headers.request.add[":path"]',
                "invalid header ':path': header cannot have \":\" prefix",
            ),
        ]
    },
    # DestinationRule --------------------------------------------------------------------------------
    "destination rule host": Case(
        destination_rule("").replace("host: reviews", "host: VALUE"),
        good=("reviews",),
        bad="bad_host",
        path="spec.host",
        message="invalid host: domain name 'bad_host' invalid (label 'bad_host' invalid)",
    ),
    "workload selector with exportTo beyond the namespace": Case(
        destination_rule("  workloadSelector: {matchLabels: {app: web}}\n  exportTo: VALUE\n"),
        good=("['.']", "[default]"),
        bad="['*']",
        path="spec.exportTo",
        message="destination rule with workload selector cannot have exportTo beyond current namespace",
    ),
    "an empty port traffic policy": Case(
        policy("portLevelSettings: [{port: {number: 80}VALUE}]"),
        good=(", loadBalancer: {simple: RANDOM}",),
        bad="",
        marker="portLevelSettings",
        path="spec.trafficPolicy.portLevelSettings[0]",
        message="port traffic policy must have at least one field",
    ),
    "an empty connection pool": Case(
        policy("connectionPool: VALUE"),
        good=("{tcp: {maxConnections: 10}}", "{http: {http1MaxPendingRequests: 10}}"),
        bad="{}",
        marker="connectionPool",
        path="spec.trafficPolicy.connectionPool",
        message="connection pool must have at least one field",
    ),
    "connect timeout under 1ms": Case(
        policy("connectionPool: {tcp: {connectTimeout: VALUE}}"),
        good=("1ms", "10s"),
        bad="999us",
        path="spec.trafficPolicy.connectionPool.tcp.connectTimeout",
        message="duration 999us must be at least 1ms",
    ),
    **{
        f"outlier {field} over 100": Case(
            policy(f"outlierDetection: {{{field}: VALUE}}"),
            good=("0", "100"),
            bad="101",
            marker=field,
            path=f"spec.trafficPolicy.outlierDetection.{field}",
            message="percentage 101 is not in range 0..100",
        )
        for field in ("maxEjectionPercent", "minHealthPercent")
    },
    **{
        f"outlier {field} under 1ms": Case(
            policy(f"outlierDetection: {{{field}: VALUE}}"),
            good=("1ms", "30s"),
            bad="999us",
            marker=field,
            path=f"spec.trafficPolicy.outlierDetection.{field}",
            message="duration 999us must be at least 1ms",
        )
        for field in ("baseEjectionTime", "interval")
    },
    "outlier consecutiveErrors is deprecated": Case(
        policy("outlierDetection: {VALUE: 5}"),
        good=("consecutive5xxErrors", "consecutiveGatewayErrors"),
        bad="consecutiveErrors",
        path="spec.trafficPolicy.outlierDetection.consecutiveErrors",
        message="outlier detection consecutive errors is deprecated",
        severity=WARNING,
    ),
    **{
        f"upstream TLS: {name}": Case(
            policy("tls: {VALUE}"),
            good=(
                "mode: SIMPLE",
                "mode: SIMPLE, credentialName: cert",
                "mode: MUTUAL, credentialName: cert",
                "mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem",
            ),
            bad=bad,
            marker="tls:",
            path="spec.trafficPolicy.tls",
            message=message,
        )
        for name, bad, message in [
            ("mutual without a key", "mode: MUTUAL, clientCertificate: /c.pem", "private key required for mutual tls"),
            (
                "credential and files",
                "mode: SIMPLE, credentialName: cert, caCertificates: /ca.pem",
                "cannot specify client certificates or CA certificate if credentialName is set",
            ),
        ]
    },
    # Gateway ----------------------------------------------------------------------------------------
    "gateway name": Case(
        gateway().replace("{name: gw}", "{name: VALUE}"),
        good=("gw", "edge-1"),
        bad="edge.v1",
        path="metadata.name",
        message="invalid gateway name: 'edge.v1'",
    ),
    "gateway targetPort": Case(
        gateway("{number: 80, name: http, protocolVALUE}"),
        good=(": HTTP",),
        bad=": HTTP, targetPort: 8080",
        marker="targetPort",
        path="spec.servers[0].port.targetPort",
        message="targetPort has no impact on Gateways",
    ),
    "gateway port name": Case(
        gateway("{number: 80, name: VALUE, protocol: HTTP}"),
        good=("http", "h"),
        bad="''",
        marker="number: 80",
        path="spec.servers[0].port.name",
        message="port name must be set",
    ),
    "gateway TLS on a TCP port": Case(
        gateway("{number: 5432, name: pg, protocol: VALUE}", tls="{mode: PASSTHROUGH}"),
        good=("TLS",),
        bad="TCP",
        marker="tls:",
        path="spec.servers[0].tls",
        message="server cannot have TLS settings for non HTTPS/TLS ports",
    ),
    "gateway httpsRedirect on a TLS port": Case(
        gateway("{number: 443, name: tls, protocol: TLS}", tls="{mode: PASSTHROUGH, httpsRedirect: VALUE}"),
        good=("false",),
        bad="true",
        marker="tls:",
        path="spec.servers[0].tls.httpsRedirect",
        message="tls.httpsRedirect should only be used with http servers",
        severity=WARNING,
    ),
    **{
        f"gateway host: {name}": Case(
            gateway(hosts="[VALUE]"),
            good=("'*'", "a.example.com", "'*.example.com'", "./a.example.com", "'*/*'", "shop/a.example.com"),
            bad=bad,
            marker="hosts:",
            path="spec.servers[0].hosts[0]",
            message=message,
        )
        for name, bad, message in [
            ("not a host", "bad_host", "invalid host: domain name 'bad_host' invalid (label 'bad_host' invalid)"),
            ("empty namespace", "/a.example.com", "config namespace and dnsName in host entry cannot be empty"),
            ("bad namespace", "Bad_NS/a.example.com", "invalid namespace value 'Bad_NS' in gateway"),
            (
                "bad host after the namespace",
                "shop/bad_host.example.com",
                "invalid host: domain name 'bad_host.example.com' invalid (label 'bad_host' invalid)",
            ),
        ]
    },
    **{
        f"gateway server TLS: {name}": Case(
            https_gateway("{VALUE}"),
            good=(
                "mode: SIMPLE, credentialName: cert",
                "mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem",
                "mode: MUTUAL, credentialName: cert",
                "mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem",
                "mode: OPTIONAL_MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem",
                "mode: ISTIO_MUTUAL",
            ),
            bad=bad,
            marker="tls:",
            path=path,
            message=message,
            severity=severity,
        )
        for name, bad, path, message, severity in [
            (
                "istio mutual with a certificate",
                "mode: ISTIO_MUTUAL, serverCertificate: /c.pem",
                "spec.servers[0].tls.serverCertificate",
                "ISTIO_MUTUAL TLS cannot have associated serverCertificate",
                Severity.ERROR,
            ),
            (
                "istio mutual with a credential",
                "mode: ISTIO_MUTUAL, credentialName: cert",
                "spec.servers[0].tls.credentialName",
                "ISTIO_MUTUAL TLS cannot have associated credentialName",
                Severity.ERROR,
            ),
            (
                "credential and files",
                "mode: SIMPLE, credentialName: cert, serverCertificate: /c.pem, privateKey: /k.pem",
                "spec.servers[0].tls",
                "only one of credentialName, serverCertificate/privateKey should be specified",
                Severity.ERROR,
            ),
            (
                "mutual without a CA",
                "mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem",
                "spec.servers[0].tls",
                "MUTUAL TLS requires a client CA bundle",
                Severity.ERROR,
            ),
            (
                "simple without a key",
                "mode: SIMPLE, serverCertificate: /c.pem",
                "spec.servers[0].tls",
                "SIMPLE TLS requires a private key",
                Severity.ERROR,
            ),
            (
                "simple without a certificate",
                "mode: SIMPLE, privateKey: /k.pem",
                "spec.servers[0].tls",
                "SIMPLE TLS requires a server certificate",
                Severity.ERROR,
            ),
        ]
    },
    "gateway passthrough with certificates": Case(
        gateway("{number: 443, name: tls, protocol: TLS}", tls="{mode: PASSTHROUGH, VALUE}"),
        good=("httpsRedirect: false",),
        bad="credentialName: cert",
        marker="tls:",
        path="spec.servers[0].tls",
        message="PASSTHROUGH mode does not use certificates, they will be ignored",
        severity=WARNING,
    ),
    # ServiceEntry -----------------------------------------------------------------------------------
    "service entry host star": Case(
        service_entry(hosts="[VALUE]", resolution="NONE"),
        good=("api.example.com", "'*.example.com'"),
        bad="'*'",
        marker="hosts:",
        path="spec.hosts[0]",
        message="invalid host *",
    ),
    "service entry host name": Case(
        service_entry(hosts="[VALUE]", resolution="NONE"),
        good=("api.example.com",),
        bad="bad_host.example.com",
        marker="hosts:",
        path="spec.hosts[0]",
        message="invalid host: domain name 'bad_host.example.com' invalid (label 'bad_host' invalid)",
    ),
    "service entry partial wildcard": Case(
        service_entry(hosts="[VALUE]", resolution="NONE"),
        good=("'*.example.com'",),
        bad="'*api.example.com'",
        marker="hosts:",
        path="spec.hosts[0]",
        message="partial wildcard '*api.example.com' not allowed",
        severity=WARNING,
    ),
    "service entry port name": Case(
        service_entry(ports="[{number: 80, name: VALUE, protocol: HTTP}]"),
        good=("http", "http-2"),
        bad="Http_2",
        path="spec.ports[0].name",
        message="invalid port name: 'Http_2' is not a DNS-1123 label (letters, digits and '-', "
        "starting and ending with a letter or digit)",
    ),
    "workload selector without labels": Case(
        service_entry(resolution="STATIC", extra="  workloadSelector: {labels: VALUE}\n"),
        good=("{app: api}",),
        bad="{}",
        marker="workloadSelector",
        path="spec.workloadSelector",
        message="workload selector without labels selects every workload in the namespace",
        severity=WARNING,
    ),
    "workload selector with endpoints": Case(
        service_entry(resolution="STATIC", extra="  VALUE\n"),
        good=("workloadSelector: {labels: {app: api}}", "endpoints: [{address: 10.0.0.1}]"),
        bad="workloadSelector: {labels: {app: api}}\n  endpoints: [{address: 10.0.0.1}]",
        marker="spec:",
        path="spec",
        message="only one of workloadSelector or endpoints is allowed in a ServiceEntry",
    ),
    "workload selector labels": Case(
        service_entry(resolution="STATIC", extra="  workloadSelector: {labels: {app: VALUE}}\n"),
        good=("api", "a" * 63),
        bad="a" * 64,
        path="spec.workloadSelector.labels.app",
        message=f"invalid label value {'a' * 64!r}",
    ),
    "static endpoint without an address": Case(
        service_entry(resolution="STATIC", extra="  endpoints: [{VALUE}]\n"),
        good=("address: 10.0.0.1", "address: '::1'", "address: unix:///var/run/api.sock", "address: unix://@api"),
        bad="labels: {app: api}",
        marker="endpoints:",
        path="spec.endpoints[0]",
        message="address is required",
    ),
    "static unix endpoint with a relative path": Case(
        service_entry(resolution="STATIC", extra="  endpoints: [{address: VALUE}]\n"),
        good=("unix:///var/run/api.sock",),
        bad="unix://var/run/api.sock",
        path="spec.endpoints[0].address",
        message="var/run/api.sock is not an absolute path to a file",
    ),
    "round-robin DNS with two endpoints": Case(
        service_entry(resolution="DNS_ROUND_ROBIN", extra="  endpoints: [{address: a.example.com}VALUE]\n"),
        good=("",),
        bad=", {address: b.example.com}",
        marker="endpoints:",
        path="spec.endpoints",
        message="there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
    ),
    "DNS endpoint address": Case(
        service_entry(extra="  endpoints: [{address: VALUE}]\n"),
        good=("db.example.com", "10.0.0.1"),
        bad="bad_db.example.com",
        path="spec.endpoints[0].address",
        message="endpoint address 'bad_db.example.com' is not a valid FQDN or an IP address",
    ),
    "DNS endpoint ports": Case(
        service_entry(extra="  endpoints: [{address: db.example.com, ports: {VALUE: 8080}}]\n"),
        good=("http",),
        bad="htp",
        path="spec.endpoints[0].ports.htp",
        message="endpoint port 8080 is not defined by the service entry",
        hint="endpoint ports are keyed by service port name: http",
    ),
    "several hosts on a non-HTTP port": Case(
        service_entry(hosts="[a.example.com, b.example.com]", ports="[{number: 443, name: p, protocol: VALUE}]"),
        good=("TLS", "HTTPS", "HTTP", "GRPC"),
        bad="TCP",
        path="spec.ports[0].protocol",
        message="multiple hosts provided with non-HTTP, non-TLS ports",
    ),
    "fault abort without httpStatus": Case(
        routed("fault: {abort: {VALUE}}"),
        good=("httpStatus: 503", "httpStatus: 503, percentage: {value: 10}"),
        bad="percentage: {value: 10}",
        marker="fault:",
        path="spec.http[0].fault.abort",
        message="fault abort needs httpStatus",
    ),
    "fault delay without fixedDelay": Case(
        routed("fault: {delay: {VALUE}}"),
        good=("fixedDelay: 1s", "fixedDelay: 1s, percentage: {value: 10}"),
        bad="percentage: {value: 10}",
        marker="fault:",
        path="spec.http[0].fault.delay",
        message="fault delay needs fixedDelay",
    ),
    "gateway server without hosts": Case(
        gateway(hosts="VALUE"),
        good=('["*"]',),
        bad="[]",
        marker="hosts:",
        path="spec.servers[0].hosts",
        message="server config must contain at least one host",
    ),
    "gateway port protocol": Case(
        gateway("{number: 80, name: http, protocol: VALUE}"),
        good=("HTTP", "http", "GRPC-WEB", "TCP"),
        bad="HTTPX",
        path="spec.servers[0].port.protocol",
        message="invalid protocol 'HTTPX'",
    ),
    "HTTPS server without TLS settings": Case(
        GATEWAY + server("{number: 443, name: https, protocol: VALUE}"),
        good=("HTTP", "TCP"),
        bad="HTTPS",
        marker="- port:",
        path="spec.servers[0]",
        message="server must have TLS settings for HTTPS/TLS protocols",
    ),
    "gateway passthrough with a server certificate only": Case(
        gateway("{number: 443, name: tls, protocol: TLS}", tls="{mode: PASSTHROUGH, VALUE}"),
        good=("httpsRedirect: false",),
        bad="serverCertificate: /c.pem",
        marker="tls:",
        path="spec.servers[0].tls",
        message="PASSTHROUGH mode does not use certificates, they will be ignored",
        severity=WARNING,
    ),
    "gateway istio mutual with a CA": Case(
        https_gateway("{mode: ISTIO_MUTUAL, VALUE}"),
        good=("httpsRedirect: false",),
        bad="caCertificates: /ca.pem",
        marker="tls:",
        path="spec.servers[0].tls.caCertificates",
        message="ISTIO_MUTUAL TLS cannot have associated caCertificates",
    ),
    **{
        f"workload selector label key: {name}": Case(
            service_entry(resolution="STATIC", extra="  workloadSelector: {labels: {VALUE: api}}\n"),
            good=("app", "k" * 63, "example.com/app", "app.kubernetes.io/name"),
            bad=bad,
            path=path,
            message=f"invalid label key {bad!r}",
            hint="an optional DNS prefix and '/', then up to 63 letters, digits, '-', '_' or '.'",
        )
        for name, bad, path in [
            ("64 characters", "k" * 64, f"spec.workloadSelector.labels.{'k' * 64}"),
            ("bad prefix", "Example.com/app", 'spec.workloadSelector.labels["Example.com/app"]'),
        ]
    },
    "headers on a route destination": Case(
        http("- route:\n  - destination: {host: reviews}\n    headers: {response: {set: {VALUE: x}}}"),
        good=("x-ok",),
        bad="Host",
        marker="headers:",
        path="spec.http[0].route[0].headers.response.set.Host",
        message="invalid header 'Host': cannot set Host header",
    ),
    "port-level connect timeout under 1ms": Case(
        policy("portLevelSettings: [{port: {number: 80}, connectionPool: {tcp: {connectTimeout: VALUE}}}]"),
        good=("1ms",),
        bad="999us",
        path="spec.trafficPolicy.portLevelSettings[0].connectionPool.tcp.connectTimeout",
        message="duration 999us must be at least 1ms",
    ),
    "TLS route destination host": Case(
        tls_route("[api.example.com]", route="route: [{destination: {host: VALUE}}]"),
        good=("api.example.com",),
        bad="'*'",
        path="spec.tls[0].route[0].destination.host",
        message="invalid destination host *",
        hint="route to a named service host",
    ),
}

#: The exact hint, where the rule gives one; "" where it gives none (so a made-up hint fails too).
HINTS = {
    "gateway reference: legacy format": "prefer the <namespace>/<name> format: default/gw",
    "SNI host: an IP address": "",
    "redirect scheme": "",
    "retryOn": "use Envoy retry conditions (5xx, gateway-error, reset, connect-failure, retriable-4xx, "
    "refused-stream, retriable-status-codes, ...) or HTTP status codes, separated by commas",
    "fault abort without httpStatus": "add e.g. `httpStatus: 503`",
    "fault delay without fixedDelay": "add e.g. `fixedDelay: 5s`",
    "outlier consecutiveErrors is deprecated": "use consecutiveGatewayErrors or consecutive5xxErrors instead",
    "upstream TLS: mutual without a key": "set privateKey or credentialName",
    "upstream TLS: credential and files": "the credential (a secret) already holds them",
    "gateway name": "no dots in Gateway names",
    "gateway server without hosts": 'e.g. `hosts: ["*"]`',
    "gateway port protocol": "use one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, REDIS, MYSQL, TCP, TLS",
    "HTTPS server without TLS settings": "add `tls: {mode: SIMPLE, credentialName: ...}` (or PASSTHROUGH for TLS)",
    "gateway server TLS: mutual without a CA": "set caCertificates or credentialName",
    "gateway server TLS: simple without a key": "set credentialName (a secret) or privateKey",
    "gateway server TLS: simple without a certificate": "set credentialName (a secret) or serverCertificate",
}
CASES = {name: dataclasses.replace(case, hint=HINTS.get(name, case.hint)) for name, case in CASES.items()}


@pytest.mark.parametrize("case", [pytest.param(case, id=name) for name, case in CASES.items()])
def test_values_inside_a_rule_load_without_findings(case: Case) -> None:
    assert_good_values_load_without_findings(case)


@pytest.mark.parametrize("case", [pytest.param(case, id=name) for name, case in CASES.items()])
def test_a_value_just_outside_a_rule_is_one_finding_at_its_field_and_line(case: Case) -> None:
    assert_bad_value_is_one_finding_at_its_field_and_line(case)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a", ""),
        ("a" * 63, ""),
        ("a-1", ""),
        ("", "must not be empty"),
        ("a" * 64, f"{'a' * 64!r} is longer than 63 characters"),
        ("-a", "'-a' is not a DNS-1123 label"),
        ("a-", "'a-' is not a DNS-1123 label"),
    ],
)
def test_dns_labels_are_up_to_63_letters_digits_and_inner_dashes(name: str, problem: str) -> None:
    error = dns1123_label_error(name)
    assert error.startswith(problem)
    assert bool(error) == bool(problem)


LABEL_63 = "a" * 63


@pytest.mark.parametrize(
    ("domain", "problem"),
    [
        (".".join([LABEL_63] * 3 + ["a" * 63]), ""),  # 255 characters
        (".".join([LABEL_63] * 3 + ["a" * 64]), "too long"),  # 256
        (f"{LABEL_63}.example.com", ""),
        (f"{LABEL_63}a.example.com", "label"),
        (f"api.{LABEL_63}a.com", "label"),
        ("", "empty domain name not allowed"),
        ("a..example.com", "label ''"),
        ("example.123", "all-numeric"),
        ("example.com.", ""),
    ],
)
def test_host_names_have_labels_of_up_to_63_and_at_most_255_characters(domain: str, problem: str) -> None:
    error = wildcard_domain_error(domain)
    assert problem in error
    assert bool(error) == bool(problem)


def test_a_fault_delay_percent_over_100_is_an_error_beside_the_deprecation_warning() -> None:
    for percent, errors in (("100", []), ("101", ["percentage 101 is not in range 0..100"])):
        findings = load_text(routed(f"fault: {{delay: {{fixedDelay: 1s, percent: {percent}}}}}")).findings
        assert [(f.severity, f.path, f.message) for f in findings if f.severity is Severity.ERROR] == [
            (Severity.ERROR, "spec.http[0].fault.delay.percent", message) for message in errors
        ]
        [warning] = [f for f in findings if f.severity is WARNING]
        assert (warning.path, warning.message) == ("spec.http[0].fault.delay.percent", "`percent` is deprecated")
        assert warning.hint == "use `percentage: {value: N}`"
