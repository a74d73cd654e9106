# Type stub of the Rust extension hardneg._hardneg (checked against the module by tests/test_stub.py).
import numpy as np
import numpy.typing as npt

__version__: str
build_profile: str
STAT_NAMES: list[str]

class FlatIndex:
    def __new__(
        cls, corpus: npt.NDArray[np.float32], *, metric: str = "ip", threads: int = 0, storage: str = "float32"
    ) -> FlatIndex: ...
    @staticmethod
    def load(path: str, *, mmap: bool = True, verify: bool = False) -> FlatIndex: ...
    def save(self, path: str) -> None: ...
    @property
    def storage(self) -> str: ...
    def kernel_for(self, n_queries: int, kernel: str | None = None) -> str: ...
    def vectors(self) -> npt.NDArray[np.float32]: ...
    def __len__(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> str: ...
    def score(self, queries: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]: ...
    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        *,
        exclude_offsets: npt.NDArray[np.int64] | None = None,
        exclude_ids: npt.NDArray[np.int64] | None = None,
        threads: int = 0,
        exact: bool = True,
        kernel: str | None = None,
        chunk_rows: int | None = None,
        dim_slice: int | None = None,
        overfetch: int | None = None,
        bound_factor: float = 1.0,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...

class HnswIndex:
    def __new__(
        cls,
        corpus: npt.NDArray[np.float32],
        *,
        metric: str = "ip",
        storage: str = "float32",
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 128,
        seed: int = 0,
        threads: int = 0,
        deterministic: bool = False,
    ) -> HnswIndex: ...
    def add_rows(self, count: int, *, threads: int = 0) -> int: ...
    def finish_build(self, *, threads: int = 0) -> tuple[int, int]: ...
    @staticmethod
    def load(path: str, *, corpus: npt.NDArray[np.float32] | None = None, mmap: bool = True, threads: int = 0) -> HnswIndex: ...
    def save(self, path: str) -> None: ...
    def __len__(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def storage(self) -> str: ...
    @property
    def params(self) -> tuple[int, int, int, int]: ...
    @property
    def orphans(self) -> tuple[int, int]: ...
    def graph_digest(self, *, threads: int = 0) -> int: ...
    @property
    def memory_usage(self) -> int: ...
    @property
    def is_view(self) -> bool: ...
    @property
    def has_corpus(self) -> bool: ...
    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        *,
        exclude_offsets: npt.NDArray[np.int64] | None = None,
        exclude_ids: npt.NDArray[np.int64] | None = None,
        expansion_search: int | None = None,
        rescore: bool = True,
        threads: int = 0,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
    def score(self, queries: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]: ...
    def recall(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        *,
        exclude_offsets: npt.NDArray[np.int64] | None = None,
        exclude_ids: npt.NDArray[np.int64] | None = None,
        expansion_search: int | None = None,
        threads: int = 0,
    ) -> float: ...

def isa() -> str: ...
def available_isas() -> list[str]: ...
def kernels() -> dict[str, object]: ...
def default_threads() -> int: ...
def select_negatives(
    candidate_scores: npt.NDArray[np.float32],
    candidate_ids: npt.NDArray[np.int64],
    positive_offsets: npt.NDArray[np.int64],
    positive_values: npt.NDArray[np.float32],
    *,
    num_negatives: int,
    range_min: int = 0,
    range_max: int | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    sampling: str = "top",
    simans_a: float = 0.5,
    simans_b: float = 0.0,
    seed: int = 0,
    query_offset: int = 0,
    threads: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], dict[str, int]]: ...
def search_partial(
    shard: FlatIndex,
    queries: npt.NDArray[np.float32],
    k: int,
    *,
    row_offset: int = 0,
    exclude_offsets: npt.NDArray[np.int64] | None = None,
    exclude_ids: npt.NDArray[np.int64] | None = None,
    total_rows: int | None = None,
    threads: int = 0,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def merge_topk(
    parts: list[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]],
    k: int,
    *,
    threads: int = 0,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def excluded_counts(
    n: int,
    offsets: npt.NDArray[np.int64],
    ids: npt.NDArray[np.int64],
    exclude_offsets: npt.NDArray[np.int64] | None = None,
    exclude_ids: npt.NDArray[np.int64] | None = None,
    *,
    exclude_self: bool = False,
) -> npt.NDArray[np.int64]: ...

class ShardIndex:
    def __new__(
        cls, index: object | None, *, row_offset: int, total_rows: int, dim: int, metric: str
    ) -> ShardIndex: ...
    def __len__(self) -> int: ...

class Miner:
    def __new__(
        cls,
        index: object,
        *,
        num_negatives: int,
        positive_width: int,
        range_max: int | None = None,
        candidates: int | None = None,
        positives: str = "exclude",
        exclude_self: bool = False,
        range_min: int = 0,
        min_score: float | None = None,
        max_score: float | None = None,
        absolute_margin: float | None = None,
        relative_margin: float | None = None,
        sampling: str = "top",
        simans_a: float = 0.5,
        simans_b: float = 0.0,
        seed: int = 0,
        threads: int = 0,
    ) -> Miner: ...
    def mine(
        self,
        queries: npt.NDArray[np.float32],
        positive_offsets: npt.NDArray[np.int64],
        positive_ids: npt.NDArray[np.int64],
        exclude_offsets: npt.NDArray[np.int64] | None = None,
        exclude_ids: npt.NDArray[np.int64] | None = None,
        *,
        query_offset: int = 0,
    ) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32], dict[str, int]
    ]: ...
    def select(
        self,
        candidate_scores: npt.NDArray[np.float32],
        candidate_ids: npt.NDArray[np.int64],
        positive_scores: npt.NDArray[np.float32],
        *,
        query_offset: int = 0,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], dict[str, int]]: ...
    def candidates(
        self,
        queries: npt.NDArray[np.float32],
        positive_offsets: npt.NDArray[np.int64],
        positive_ids: npt.NDArray[np.int64],
        exclude_offsets: npt.NDArray[np.int64] | None = None,
        exclude_ids: npt.NDArray[np.int64] | None = None,
        *,
        query_offset: int = 0,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...

def cluster(
    embeddings: npt.NDArray[np.float32],
    n_clusters: int,
    *,
    method: str = "balanced",
    iters: int = 20,
    tol: float = 1e-4,
    seed: int = 0,
    threads: int = 0,
    isa: str | None = None,
) -> tuple[npt.NDArray[np.int64], float]: ...
def dense_keys(keys: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.uint32], int]: ...
def plan_epoch(
    labels: npt.NDArray[np.int64],
    n_clusters: int,
    batch_size: int,
    *,
    random_fraction: float = 0.0,
    clusters_per_batch: int | None = None,
    keys: npt.NDArray[np.uint32] | None = None,
    drop_last: bool = False,
    seed: int = 0,
    epoch: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]: ...

class InteractionSampler:
    @staticmethod
    def from_pairs(
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        num_users: int,
        num_items: int,
        *,
        strategy: str = "uniform",
        alpha: float = 0.75,
        threads: int = 0,
    ) -> InteractionSampler: ...
    @staticmethod
    def from_csr(
        offsets: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        num_items: int,
        *,
        strategy: str = "uniform",
        alpha: float = 0.75,
        threads: int = 0,
    ) -> InteractionSampler: ...
    @property
    def num_users(self) -> int: ...
    @property
    def num_items(self) -> int: ...
    @property
    def num_interactions(self) -> int: ...
    def probabilities(self) -> npt.NDArray[np.float64]: ...
    def csr(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
    def sample(
        self,
        users: npt.NDArray[np.int64],
        num_negatives: int,
        *,
        replace: bool = True,
        seed: int = 0,
        epoch: int = 0,
        offset: int = 0,
        threads: int = 0,
    ) -> npt.NDArray[np.int64]: ...
    def hard(
        self,
        users: npt.NDArray[np.int64],
        user_embeddings: npt.NDArray[np.float32],
        item_embeddings: npt.NDArray[np.float32],
        num_negatives: int,
        *,
        pool: int | None = None,
        metric: str = "ip",
        seed: int = 0,
        epoch: int = 0,
        offset: int = 0,
        threads: int = 0,
        isa: str | None = None,
    ) -> npt.NDArray[np.int64]: ...

class TripleCorruptor:
    def __new__(
        cls,
        triples: npt.NDArray[np.int64],
        num_entities: int,
        num_relations: int,
        *,
        mode: str = "both",
        strategy: str = "uniform",
        filtered: bool = True,
        clusters: npt.NDArray[np.int64] | None = None,
    ) -> TripleCorruptor: ...
    @property
    def num_entities(self) -> int: ...
    @property
    def num_relations(self) -> int: ...
    @property
    def num_triples(self) -> int: ...
    def head_probability(self) -> npt.NDArray[np.float64]: ...
    def known(self, triples: npt.NDArray[np.int64], side: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
    def corrupt(
        self,
        triples: npt.NDArray[np.int64],
        num_negatives: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        offset: int = 0,
        threads: int = 0,
    ) -> npt.NDArray[np.int64]: ...
    def hard(
        self,
        triples: npt.NDArray[np.int64],
        num_negatives: int,
        entity_embeddings: npt.NDArray[np.float32],
        *,
        head_queries: npt.NDArray[np.float32] | None = None,
        tail_queries: npt.NDArray[np.float32] | None = None,
        false_negative_margin: float | None = None,
        seed: int = 0,
        epoch: int = 0,
        offset: int = 0,
        threads: int = 0,
        isa: str | None = None,
    ) -> npt.NDArray[np.int64]: ...
