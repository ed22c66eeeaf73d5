"""Type hints of the public API of acsleuth (see the docstrings)."""

from os import PathLike
from typing import Any, Literal, Mapping, Optional, Sequence, Tuple, Union, overload

import numpy as np

__version__: str

_Matrix = Any  # numpy.ndarray | scipy.sparse.csr_matrix | scipy.sparse.csc_matrix
_Input = Union[Any, Tuple[_Matrix, Sequence[str]], Tuple[_Matrix, Sequence[str], Sequence[str]]]
_Device = str  # "auto" | "cpu" | "cuda" | "cuda:N"

def detect(
    reference: _Input,
    target: _Input,
    *,
    fdr: float = 0.1,
    anomaly_ratio: Optional[float] = None,
    layer: Optional[str] = None,
    use_raw: bool = False,
    n_hvg: Optional[int] = None,
    seed: int = 0,
    batch_key: Optional[str] = None,
    score: Literal["novelty", "paper"] = "novelty",
    device: _Device = "auto",
    threads: Optional[int] = None,
    progress: bool = True,
    copy: bool = False,
    **settings: Any,
) -> Union[None, Any, dict]: ...

def run(
    reference: _Input,
    target: _Input,
    *,
    batch_key: Optional[str] = None,
    n_subtypes: Union[int, Literal["auto"]] = "auto",
    correction: Literal["kin-shift", "style"] = "kin-shift",
    fdr: float = 0.1,
    anomaly_ratio: Optional[float] = None,
    layer: Optional[str] = None,
    use_raw: bool = False,
    n_hvg: Optional[int] = None,
    seed: int = 0,
    score: Literal["novelty", "paper"] = "novelty",
    keep_corrected: bool = False,
    device: _Device = "auto",
    threads: Optional[int] = None,
    progress: bool = True,
    copy: bool = False,
    **settings: Any,
) -> Union[None, Any, dict]: ...

def report(adata: Any) -> dict: ...

class Detector:
    layer: Optional[str]
    use_raw: bool
    device: _Device
    threads: Optional[int]
    progress: bool
    def __init__(
        self,
        *,
        fdr: float = 0.1,
        anomaly_ratio: Optional[float] = None,
        n_hvg: Optional[int] = None,
        seed: int = 0,
        score: Literal["novelty"] = "novelty",
        layer: Optional[str] = None,
        use_raw: bool = False,
        device: _Device = "auto",
        threads: Optional[int] = None,
        progress: bool = True,
        **settings: Any,
    ) -> None: ...
    @property
    def settings(self) -> dict: ...
    @property
    def genes(self) -> list: ...
    @property
    def n_reference(self) -> int: ...
    def fit(self, reference: _Input) -> "Detector": ...
    def score(
        self,
        target: _Input,
        *,
        batch_key: Optional[str] = None,
        fdr: Optional[float] = None,
        anomaly_ratio: Optional[float] = None,
        seed: Optional[int] = None,
        copy: bool = False,
    ) -> Union[None, Any, dict]: ...
    def save(self, path: Union[str, PathLike]) -> None: ...
    @classmethod
    def load(
        cls,
        path: Union[str, PathLike],
        *,
        layer: Optional[str] = None,
        use_raw: bool = False,
        device: _Device = "auto",
        threads: Optional[int] = None,
        progress: bool = True,
    ) -> "Detector": ...
