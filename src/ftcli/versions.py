"""Installed versions of the packages a result depends on (recorded in eval results, model cards and
cache keys)."""

from __future__ import annotations


def package_versions(packages) -> dict[str, str]:
    """{package: version} for each installed package of `packages` (missing ones are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found



