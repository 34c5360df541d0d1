"""slapfed: a federated, recursive cloud orchestrator in the line of SlapOS."""
from setuptools import find_packages, setup

setup(
    name="slapfed",
    version="0.1.0",
    description="Federated, recursive cloud orchestrator: one verb, request",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["slapfed", "slapfed.*"]),
    include_package_data=True,
    package_data={"slapfed.ui": ["templates/*.html", "static/*"]},
    install_requires=[
        "Flask>=3.1,<4",
        "ZODB>=6.0,<7",
        "ZEO>=6.0,<7",
        "BTrees",
        "persistent",
        "transaction",
        "zc.buildout>=4,<7",
        "zc.recipe.egg",
        "supervisor>=4.2,<5",
        "networkx>=3.2",
        "Pillow>=10.1",          # slapfed topology export --format png
        "requests>=2.31",
        "click>=8.1",
        "gunicorn>=22",
        "cryptography>=50",      # HPKE (slapfed.ca.seal) with the P-256 KEM
        "aiohttp>=3.9,<4",       # slapfed-cdn-front (profiles/cdn): server and client
        "pydantic>=2.7,<3",      # core.wire: the bodies, their validation and schemas
        "prometheus-client>=0.20",   # /metrics of the master and the node agent
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout", "hypothesis>=6", "jsonschema>=4.18",
                 "schemathesis>=4",
                 "slapos.core==1.26.1",    # the stock SLAP client, for tests/test_slap*.py
                 # `slapos proxy start` imports it (bench/bench_slap.py's slapproxy)
                 "slapos.libnetworkcache==0.30",
                 # drives Debian's chromium in tests/test_ui_e2e.py (never downloads one)
                 "playwright>=1.40"],
    },
    entry_points={
        "console_scripts": [
            "slapfed = slapfed.cli.main:main",
            "slapfed-hello-web = slapfed.samples.hello:main",
            "slapfed-cdn-front = slapfed.samples.cdn:main",
        ],
        "zc.buildout": [
            "file = slapfed.recipe:FileRecipe",
            "service = slapfed.recipe:ServiceRecipe",
            "promise = slapfed.recipe:PromiseRecipe",
            "publish = slapfed.recipe:PublishRecipe",
            "fail = slapfed.recipe:FailRecipe",
            "download = slapfed.recipe:DownloadRecipe",
            "build = slapfed.recipe:BuildRecipe",
            "master = slapfed.recipe_master:MasterRecipe",
            "master-replica = slapfed.recipe_master:MasterReplicaRecipe",
            "cdn-sites = slapfed.recipe_cdn:CdnSitesRecipe",
        ],
    },
)
