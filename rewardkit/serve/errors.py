"""The errors a reward server answers with: each knows its HTTP status and whether a retry can help."""


class ServeError(Exception):
    status = 500
    retryable = False


class BadRequest(ServeError):
    status = 422


class Unauthorized(ServeError):
    status = 401


class UnknownReward(ServeError):
    status = 404


class RequestTimeout(ServeError):
    status = 408


class TooLarge(ServeError):
    status = 413


class RewardFailed(ServeError):
    status = 500


class Overloaded(ServeError):
    status = 503
    retryable = True


class TimedOut(ServeError):
    status = 504
    retryable = True
