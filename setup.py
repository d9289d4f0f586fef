"""Packages are found, not listed: every package under xvalidate/, and the adapters/ folder
installed as the package `xvalidate_adapters` (pyproject.toml maps the folder). The rest of the
metadata is in pyproject.toml."""
from setuptools import find_packages, setup

ADAPTERS = ["xvalidate_adapters" + name[len("adapters"):] for name in find_packages(include=["adapters", "adapters.*"])]

setup(packages=find_packages(include=["xvalidate", "xvalidate.*"]) + ADAPTERS)
