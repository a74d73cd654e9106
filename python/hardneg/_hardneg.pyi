# Type stub of the Rust extension hardneg._hardneg (checked against the module by tests/test_stub.py).
import numpy as np
import numpy.typing as npt

__version__: str
build_profile: str

class FlatIndex:
    def __new__(cls, corpus: npt.NDArray[np.float32], *, threads: int = 0) -> FlatIndex: ...
    def __len__(self) -> int: ...
    @property
    def dim(self) -> int: ...
    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        *,
        exclude_offsets: npt.NDArray[np.int64] | None = None,
        exclude_ids: npt.NDArray[np.int64] | None = None,
        threads: int = 0,
        isa: str | None = None,
        chunk_rows: int | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...

def isa() -> str: ...
def available_isas() -> list[str]: ...
def normalize_rows(a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
def check_finite(a: npt.NDArray[np.float32], what: str, *, threads: int = 0) -> None: ...
