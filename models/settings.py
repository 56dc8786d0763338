"""What the models and the pipeline both check settings against, standard library only: the digit
classes a class-conditional model conditions on, and the checks of a constructor's arguments or a
config's values. The pipeline's data stages and digit classifier use them without loading the model
interface (models/base.py), so an edit to a model leaves those stages as they are."""
from __future__ import annotations

DIGIT_CLASSES = 10  # the labels a class-conditional family conditions on: MNIST's digits


def require_positive(**values: int | None) -> None:
    """The one check for settings that must be whole numbers >= 1 (None means 'not set')."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def require_sizes(**lists: list[int]) -> None:
    """Layer sizes: a non-empty list of whole numbers >= 1."""
    for name, sizes in lists.items():
        if not sizes or min(sizes) < 1:
            raise ValueError(f"{name} must be a non-empty list of positive sizes, got {list(sizes)}")


def require_pixel_levels(pixel_levels: int) -> None:
    if pixel_levels < 2:
        raise ValueError(f"pixel_levels must be >= 2, got {pixel_levels}")
