"""The parsing core: raw IFCB files to exact images, sizes and metadata. Pure and synchronous."""
from .errors import AdcError, BinError, HeaderError, IdentifierError, ImageMissing, RoiError
from .source import SourceUnreadable

__all__ = ["AdcError", "BinError", "HeaderError", "IdentifierError", "ImageMissing", "RoiError", "SourceUnreadable"]
