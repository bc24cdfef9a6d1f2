"""Fixtures for integration tests: clusters of real node processes, always stopped."""

from __future__ import annotations

import pytest

from zkv.localcluster import Cluster


@pytest.fixture
def make_cluster(tmp_path):
    clusters: list[Cluster] = []

    def make(size: int, **options) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster-{len(clusters)}", size, **options)
        cluster.directory.mkdir(parents=True)
        clusters.append(cluster)
        return cluster.start()

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop()


@pytest.fixture
def cluster3(make_cluster) -> Cluster:
    return make_cluster(3)
