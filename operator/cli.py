"""``igbridge-operator``: run the kopf operator for InstagramChannel resources."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import kopf

from igbridge.relay.config import ConfigError
from igbridge.relay.version import VERSION

from .leader import LeaseTiming, parse_lease, run_while_leading
from .settings import load_operator_settings


def _quiet_report_handler(record: logging.LogRecord) -> bool:
    """Every relay report runs a cheap check; its "succeeded" lines would flood the log
    (one per pod every few seconds). Failures and what it changes still show."""
    return not (record.levelno < logging.WARNING and "'relay_reported'" in str(record.getMessage()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="igbridge-operator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8081/healthz", help="liveness endpoint URL"
    )
    parser.add_argument(
        "--leader-lease",
        metavar="NAMESPACE/NAME",
        help="act only while holding this coordination.k8s.io Lease (standby replicas)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=int,
        default=15,
        help="the Lease's duration: a standby takes over this long after the holder died",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if not args.namespace and not args.all_namespaces:
        parser.error(
            "say which namespaces to watch: --namespace NS (repeatable) or --all-namespaces"
        )
    lease: tuple[str, str] | None = None
    try:
        timing = LeaseTiming.of(args.lease_seconds)
        if args.leader_lease:
            lease = parse_lease(args.leader_lease)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        config = load_operator_settings()
    except ConfigError as exc:
        print(f"igbridge-operator: configuration error: {exc}", file=sys.stderr)
        return 2
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON, log_prefix=False)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Even with --verbose: the Kubernetes client logs whole response bodies at debug,
    # Secrets included.
    logging.getLogger("kubernetes_asyncio").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_report_handler)
    from .handlers import registry

    settings = kopf.OperatorSettings()
    # Watching named namespaces needs no namespace listing (and so no cluster-wide list
    # permission); cluster-wide, keep scanning so a CRD installed later is noticed.
    settings.scanning.disabled = not args.all_namespaces

    async def operate() -> None:
        # standalone: no kopf peering; one acting replica is the Lease's business.
        await kopf.operator(
            registry=registry(config),
            clusterwide=args.all_namespaces,
            namespaces=args.namespace,
            standalone=True,
            liveness_endpoint=args.liveness,
            settings=settings,
        )

    if lease is None:
        asyncio.run(operate())
    else:
        namespace, name = lease
        asyncio.run(
            run_while_leading(
                operate,
                namespace=namespace,
                name=name,
                timing=timing,
                liveness=args.liveness,
                metrics_port=config.operator_metrics_port,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
