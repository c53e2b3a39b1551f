"""The one exception family the core raises for bad input.

The header and ADC parsers never raise: what they cannot read gives fewer properties or
skipped lines. Identifiers, images and unreadable files raise these.
"""


class BinError(Exception):
    """A bin, or one of its files, cannot be read as the IFCB format says."""


class IdentifierError(BinError, ValueError):
    """A name is not a bin id, target id or day folder."""


class RoiError(BinError):
    """An image's bytes cannot be read from the `.roi` file."""


class ImageMissing(RoiError):
    """The bin does not serve this image (never listed, or its bytes are gone)."""
