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


class ProductError(BinError):
    """A product file beside a bin (features, class scores, blobs, annotations) cannot be read."""


class ProductUnavailable(ProductError):
    """A product file could not be read whole this time (fewer bytes came than listed): worth
    trying again, never recorded as what the file holds. (A reader that runs past its time or
    crashes is what damaged files make it do: that is the file's answer.)"""


class ProductDependencyMissing(ProductError):
    """Reading a product needs an optional package (h5py or scipy) that is not installed."""


def one_line(err: BaseException) -> str:
    """An exception's message as one short line, for a log line."""
    lines = str(err).splitlines()
    return lines[0][:120] if lines and lines[0] else type(err).__name__
