"""The parsing core: raw IFCB files to exact images, sizes and metadata. Pure and synchronous."""
from .errors import BinError, IdentifierError, ImageMissing, RoiError
from .source import SourceUnreadable

__all__ = ["BinError", "IdentifierError", "ImageMissing", "RoiError", "SourceUnreadable"]
