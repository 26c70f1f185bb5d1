"""cluster.yaml and docs/cluster.md, checked offline: Ray's own schema, and the security and layout rules.

Nothing here contacts AWS or starts Ray. The checkers are plain functions returning a list of problems, so
each test can also feed them a deliberately broken copy and see them fail.
"""

from __future__ import annotations

import ast
import copy
import ipaddress
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CLUSTER_YAML = REPO / "cluster.yaml"
CLUSTER_DOC = REPO / "docs" / "cluster.md"

ALLOWED_PUBLIC_PORT = 22
OPEN_TO_ALL = {"0.0.0.0/0", "::/0"}
GPU_FAMILIES = ("g", "p", "dl", "trn", "inf")  # EC2 instance families with accelerators


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def doc() -> str:
    return CLUSTER_DOC.read_text()


# ----------------------------------------------------------------------------------------------- helpers


def head_type(config: dict) -> dict:
    return config["available_node_types"][config["head_node_type"]]


def worker_types(config: dict) -> dict[str, dict]:
    return {name: t for name, t in config["available_node_types"].items() if name != config["head_node_type"]}


def all_commands(config: dict) -> list[str]:
    """Every shell command the cluster launcher runs, global and per node type."""
    keys = (
        "initialization_commands",
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    )
    commands = [cmd for key in keys for cmd in config.get(key) or []]
    for node_type in config["available_node_types"].values():
        for key in ("initialization_commands", "worker_setup_commands"):
            commands += node_type.get(key) or []
    return commands


def ray_start_commands(config: dict, key: str) -> list[str]:
    return [cmd for cmd in config.get(key) or [] if "ray start" in cmd]


def instance_family(node_type: dict) -> str:
    return re.match(r"[a-z]+", node_type["node_config"]["InstanceType"]).group(0)


def efs_mount(config: dict) -> tuple[str, str]:
    """(EFS host, mount point) of the `mount -t nfs4` command in the initialization commands."""
    for cmd in config.get("initialization_commands") or []:
        match = re.search(r"mount -t nfs4 .*?(\S+):/ (/\S+?)\)?(?:\s|$)", cmd)
        if match:
            return match.group(1), match.group(2)
    raise AssertionError("no `mount -t nfs4 HOST:/ PATH` in initialization_commands")


# ------------------------------------------------------------------------------------- security checkers


def ray_default_ingress() -> list[dict]:
    """The rules Ray adds whenever it creates the security group itself, read from Ray's source (the AWS
    provider needs boto3 to import, which this environment need not have): intra-cluster traffic plus
    ``_create_default_ssh_inbound_rules``'s return value, evaluated as a literal."""
    import ray.autoscaler

    source = Path(ray.autoscaler.__file__).parent / "_private" / "aws" / "config.py"
    tree = ast.parse(source.read_text())
    [func] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_create_default_ssh_inbound_rules"]
    [ret] = [n for n in ast.walk(func) if isinstance(n, ast.Return)]
    intracluster = {"IpProtocol": "-1", "FromPort": -1, "ToPort": -1, "UserIdGroupPairs": [{"GroupId": "sg-self"}]}
    return [intracluster, *ast.literal_eval(ret.value)]


def effective_ingress(config: dict) -> list[dict]:
    """Inbound rules this config can put on the cluster's nodes. ``provider.security_group.IpPermissions``
    count always (Ray applies them whenever it creates a group); Ray's default rules count as soon as one
    node type has no ``SecurityGroupIds`` of its own (then Ray creates the group)."""
    rules = list(config.get("provider", {}).get("security_group", {}).get("IpPermissions", []))
    if any("SecurityGroupIds" not in t["node_config"] for t in config["available_node_types"].values()):
        rules += ray_default_ingress()
    return rules


def ingress_problems(rules: list[dict]) -> list[str]:
    """What is wrong with EC2 ``IpPermissions``: any source open to the whole internet, and any port other
    than SSH open to a non-private address range. Rules between security groups are node-to-node: fine."""
    problems = []
    for rule in rules:
        protocol = str(rule.get("IpProtocol", "-1"))
        all_ports = protocol in ("-1", "all") or rule.get("FromPort") in (None, -1)
        ports = "all" if all_ports else (rule["FromPort"], rule["ToPort"])
        ssh_only = ports == (ALLOWED_PUBLIC_PORT, ALLOWED_PUBLIC_PORT)
        cidrs = [r.get("CidrIp") for r in rule.get("IpRanges", [])]
        cidrs += [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
        for cidr in cidrs:
            try:
                network = ipaddress.ip_network(cidr, strict=False)
            except (TypeError, ValueError):
                problems.append(f"ports {ports}: source {cidr!r} is not an address range (unfilled variable?)")
                continue
            if str(network) in OPEN_TO_ALL or network.prefixlen == 0:
                problems.append(f"ports {ports} open to the whole internet ({cidr})")
            elif not ssh_only and not network.is_private:
                problems.append(f"ports {ports} open to public range {cidr}; only port 22 may be")
        if rule.get("PrefixListIds") and not ssh_only:
            problems.append(f"ports {ports} open to a prefix list; only port 22 may be")
    return problems


def doc_ingress(doc: str) -> list[dict]:
    """The ``aws ec2 authorize-security-group-ingress`` commands of the docs, as ``IpPermissions``, with the
    docs' literal ``NAME=value`` shell assignments substituted."""
    text = doc.replace("\\\n", " ")
    variables = {
        name: value
        for name, value in re.findall(r"^\s*([A-Z_][A-Z0-9_]*)=(\S+)", text, flags=re.M)
        if not value.startswith("$")
    }
    rules = []
    for line in text.splitlines():
        if not re.match(r"\s*aws ec2 authorize-security-group-ingress\b", line):
            continue  # prose that names the command
        line = line.split("#", 1)[0]
        line = re.sub(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", lambda m: variables.get(m.group(1), m.group(0)), line)
        args = shlex.split(line)
        opts = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
        if "--ip-permissions" in opts:
            rules += json.loads(opts["--ip-permissions"])
            continue
        rule: dict[str, Any] = {"IpProtocol": opts.get("--protocol", "-1")}
        if "--port" in opts:
            low, _, high = opts["--port"].partition("-")
            rule["FromPort"], rule["ToPort"] = int(low), int(high or low)
        if "--cidr" in opts:
            key = "Ipv6Ranges" if ":" in opts["--cidr"] else "IpRanges"
            rule[key] = [{"CidrIpv6" if key == "Ipv6Ranges" else "CidrIp": opts["--cidr"]}]
        if "--source-group" in opts:
            rule["UserIdGroupPairs"] = [{"GroupId": opts["--source-group"]}]
        rules.append(rule)
    return rules


def dashboard_problems(config: dict) -> list[str]:
    """The head's `ray start` must keep the dashboard on (Train-in-Tune needs the State API) and bound to
    loopback, and must start the autoscaler."""
    starts = ray_start_commands(config, "head_start_ray_commands")
    if len(starts) != 1:
        return [f"expected one `ray start` in head_start_ray_commands, found {len(starts)}"]
    cmd = starts[0]
    problems = []
    host = re.search(r"--dashboard-host[= ](\S+)", cmd)
    if host and host.group(1).strip("'\"") not in ("127.0.0.1", "localhost"):
        problems.append(f"dashboard bound to {host.group(1)}, not 127.0.0.1")
    include = re.search(r"--include-dashboard[= ](\S+)", cmd)
    if include and include.group(1).strip("'\"").lower() in ("false", "0", "no"):
        problems.append("dashboard turned off (--include-dashboard false); Train-in-Tune needs the State API")
    for flag in ("--ray-client-server-port", "--dashboard-agent-listen-port"):
        if flag in cmd:
            problems.append(f"{flag} is set: keep Ray's listeners at their defaults, behind the security group")
    if "--autoscaling-config=~/ray_bootstrap_config.yaml" not in cmd:
        problems.append("head does not start the autoscaler (--autoscaling-config=~/ray_bootstrap_config.yaml)")
    return problems


def auth_problems(config: dict) -> list[str]:
    """Token authentication on every node, never disabled, with the token shipped to Ray's default path."""
    problems = []
    for cmd in all_commands(config):
        if re.search(r"RAY_AUTH_MODE\s*=\s*['\"]?disabled", cmd, flags=re.I):
            problems.append(f"command disables token auth: {cmd!r}")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for cmd in ray_start_commands(config, key):
            if not re.search(r"RAY_AUTH_MODE=token\b", cmd):
                problems.append(f"{key}: `ray start` without RAY_AUTH_MODE=token: {cmd!r}")
    if "~/.ray/auth_token" not in (config.get("file_mounts") or {}):
        problems.append("no file mount puts the cluster token at ~/.ray/auth_token on the nodes")
    return problems


# --------------------------------------------------------------------------------------------------- tests


def test_loads_with_safe_load(config):
    assert isinstance(config, dict)
    assert config["provider"]["type"] == "aws"


def test_valid_against_rays_schema(config):
    """The same steps as `ray up` before it calls AWS: defaults merged (prepare_config, reads aws/defaults.yaml
    only), then validate_config (ray-schema.json via jsonschema, plus head type and min/max worker checks)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c.update(max_worker=8),  # misspelt top-level key
        lambda c: head_type(c)["resources"].update(CPU=0.5),  # resources must be integers
        lambda c: c.update(head_node_type="ray.head.missing"),
    ],
    ids=["unknown-key", "fractional-resource", "unknown-head-type"],
)
def test_schema_validation_rejects_a_broken_copy(config, breakage):
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = copy.deepcopy(config)
    breakage(broken)
    merged = prepare_config(broken)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validate_config(merged)


def test_no_public_ingress_from_the_config(config):
    assert ingress_problems(effective_ingress(config)) == []


def test_every_node_type_uses_the_users_security_group(config):
    """Without SecurityGroupIds, Ray creates a group and opens SSH to 0.0.0.0/0 (checked just below)."""
    for name, node_type in config["available_node_types"].items():
        assert node_type["node_config"].get("SecurityGroupIds"), name


def test_documented_security_group_is_closed(doc):
    rules = doc_ingress(doc)
    assert any(r.get("FromPort") == 22 for r in rules), "docs create no SSH rule"
    assert any(r.get("UserIdGroupPairs") for r in rules), "docs create no node-to-node rule"
    assert ingress_problems(rules) == []


@pytest.mark.parametrize(
    "rule",
    [
        {"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 10001, "ToPort": 10001, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
        {"IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6379, "IpRanges": [{"CidrIp": "52.0.0.0/8"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "8.8.8.8/32"}]},
    ],
    ids=["dashboard-world", "client-world-v6", "gcs-public-range", "ssh-world", "all-ports-public-ip"],
)
def test_checker_catches_an_opened_port(config, rule):
    broken = copy.deepcopy(config)
    broken["provider"]["security_group"] = {"GroupName": "nlrd-ray", "IpPermissions": [rule]}
    assert ingress_problems(effective_ingress(broken))


def test_checker_allows_private_ranges_and_ssh_from_one_address():
    rules = [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "198.51.100.7/32"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "8.8.8.8/32"}]},
        {"IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6379, "IpRanges": [{"CidrIp": "10.0.0.0/16"}]},
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-123"}]},
    ]
    assert ingress_problems(rules) == []


def test_checker_catches_rays_own_group(config):
    """Drop SecurityGroupIds from one worker type: Ray would create its group, with SSH from anywhere."""
    broken = copy.deepcopy(config)
    next(iter(worker_types(broken).values()))["node_config"].pop("SecurityGroupIds")
    assert any("whole internet" in p for p in ingress_problems(effective_ingress(broken)))


def test_checker_catches_a_world_rule_in_the_docs(doc):
    broken = (
        doc + "\naws ec2 authorize-security-group-ingress --group-id $SG --protocol tcp --port 8265 --cidr 0.0.0.0/0\n"
    )
    assert ingress_problems(doc_ingress(broken))


def test_head_keeps_dashboard_on_and_on_loopback(config):
    assert dashboard_problems(config) == []


@pytest.mark.parametrize(
    "old, new",
    [
        ("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0"),
        ("--dashboard-host=127.0.0.1", "--dashboard-host=127.0.0.1 --include-dashboard=false"),
        ("--autoscaling-config=~/ray_bootstrap_config.yaml", ""),
    ],
    ids=["public-dashboard", "dashboard-off", "no-autoscaler"],
)
def test_dashboard_checker_catches_a_broken_start_command(config, old, new):
    broken = copy.deepcopy(config)
    broken["head_start_ray_commands"] = [cmd.replace(old, new) for cmd in broken["head_start_ray_commands"]]
    assert dashboard_problems(broken)


def test_token_auth_stays_on(config):
    assert auth_problems(config) == []


def test_auth_checker_catches_disabled_auth(config):
    broken = copy.deepcopy(config)
    broken["worker_start_ray_commands"] = [
        cmd.replace("RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled") for cmd in broken["worker_start_ray_commands"]
    ]
    assert len(auth_problems(broken)) >= 2  # disabled, and the worker's `ray start` lacks token mode
    broken = copy.deepcopy(config)
    del broken["file_mounts"]["~/.ray/auth_token"]
    assert auth_problems(broken)


def test_head_has_no_gpu_worker_role(config):
    head = head_type(config)
    assert head["resources"].get("GPU", 0) == 0
    assert not instance_family(head).startswith(GPU_FAMILIES), head["node_config"]["InstanceType"]
    assert head.get("max_workers", 0) == 0
    assert head["resources"]["CPU"] > 0, "the head runs the driver and the 0.1-CPU trial coordinators"


def test_workers_request_gpus_spot_first_with_on_demand_fallback(config):
    workers = worker_types(config)
    assert workers
    for name, node_type in workers.items():
        assert node_type["resources"].get("GPU", 0) >= 1, name
        assert instance_family(node_type).startswith(GPU_FAMILIES), name
    spot = {n: t for n, t in workers.items() if t["node_config"].get("InstanceMarketOptions", {}).get("MarketType")}
    on_demand = {n: t for n, t in workers.items() if n not in spot}
    assert spot and on_demand
    assert all(t["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for t in spot.values())
    assert min(t.get("priority", 0) for t in spot.values()) > max(t.get("priority", 0) for t in on_demand.values())
    assert sum(t.get("min_workers", 0) for t in workers.values()) == 0, "GPU nodes only while there is work"


def test_every_node_installs_the_project(config):
    from ray.autoscaler._private.util import prepare_config

    assert config["file_mounts"]["~/nlrd-search"] == "."
    assert (REPO / "setup.sh").is_file()
    merged = prepare_config(copy.deepcopy(config))
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any(re.search(r"cd ~/nlrd-search && \./setup\.sh\b", cmd) for cmd in merged[key]), key
    for name, node_type in config["available_node_types"].items():
        override = node_type.get("worker_setup_commands")  # a per-type list replaces the global ones
        assert override is None or any("setup.sh" in cmd for cmd in override), name
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for cmd in ray_start_commands(config, key):
            assert "~/nlrd-search/.venv/bin/ray start" in cmd, "start Ray from the venv setup.sh builds"


def test_efs_mount_is_where_the_docs_send_results(config, doc):
    host, mount = efs_mount(config)
    assert re.fullmatch(r"fs-[\w]+\.efs\.([a-z0-9-]+)\.amazonaws\.com", host), host
    assert host.split(".")[2] == config["provider"]["region"], "EFS host and provider.region disagree"
    path = r"([^\s`*'\"]+)"  # a path, without the Markdown or quotes around it
    outs = re.findall(r"--out " + path, doc)
    assert f"{mount}/results" in outs
    paths = outs + re.findall(r"--resume " + path, doc) + re.findall(r"rsync-down cluster\.yaml " + path, doc)
    assert len(paths) >= 3
    for found in paths:
        assert found == mount or found.startswith(mount + "/"), f"{found} is not on the shared EFS mount {mount}"


def test_docs_name_every_placeholder(config, doc):
    placeholders = set(re.findall(r"\b(?:ami|sg|fs)-REPLACE_ME\b", CLUSTER_YAML.read_text()))
    assert placeholders == {"ami-REPLACE_ME", "sg-REPLACE_ME", "fs-REPLACE_ME"}
    for placeholder in placeholders:
        assert placeholder in doc, placeholder
    for step in ("ray up cluster.yaml", "ray dashboard cluster.yaml", "ray down cluster.yaml", "http://localhost:8265"):
        assert step in doc, step
