"""The one exception family the core raises for bad input."""


class BinError(Exception):
    """A bin, or one of its files, cannot be read as the SPEC says."""


class IdentifierError(BinError, ValueError):
    """A name is not a bin id, target id or day folder."""


class HeaderError(BinError):
    """A `.hdr` file cannot be read."""


class AdcError(BinError):
    """An `.adc` file cannot be read."""


class RoiError(BinError):
    """An image's bytes cannot be read from the `.roi` file."""


class ImageMissing(RoiError):
    """The bin does not serve this image (never listed, or its bytes are gone)."""
