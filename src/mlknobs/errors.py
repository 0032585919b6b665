"""The exception types the library raises; the CLI turns each into a one-line message."""


class MlknobsError(Exception):
    """Base class: anything a user can act on, reported without a traceback."""


class DataFormatError(MlknobsError, ValueError):
    """A data file is not what it claims to be (bad IDX header, truncated payload, bad gzip)."""


class DownloadError(MlknobsError):
    """No mirror could deliver a verified copy of a dataset file."""


class ModelFileError(MlknobsError, ValueError):
    """A model or checkpoint file is missing, of an unknown version, or inconsistent."""


class TrainingDiverged(MlknobsError):
    """The loss or the weights stopped being finite or blew up during training."""


class ImageError(MlknobsError, ValueError):
    """A user's picture could not be read or holds no digit."""


class PlotError(MlknobsError):
    """A picture cannot be drawn or written (missing matplotlib, unwritable path, nothing to plot)."""


class OutputError(MlknobsError):
    """An output file (model, checkpoint, picture) cannot be written where the user asked."""


class TrainingInterrupted(MlknobsError):
    """Ctrl-C during training. `checkpoint` holds the last completed epoch, if any."""

    def __init__(self, message: str, checkpoint=None, epochs_done: int = 0):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.epochs_done = epochs_done
