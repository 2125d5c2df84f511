"""AWS Lambda handler for Upstash QStash deliveries: your code runs only for verified ones.

Set QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY (see README.md), then
put your logic in ``handle`` below.  Works behind a Function URL, API Gateway
(HTTP and REST APIs) and an Application Load Balancer.
"""

from __future__ import annotations

__all__ = ["handle", "lambda_handler"]

from qstash_verify import Message, NonRetryableError, RetryLater, serve_lambda  # noqa: F401 -- for your `raise`


# ---- Your code goes here -----------------------------------------------------------
def handle(message: Message) -> object:
    """Process one verified QStash message.

    ``message`` has ``body`` (bytes), ``text``, ``json()``, ``callback()``, ``headers``,
    ``message_id``, ``retried`` and the verified ``claims``.  Return None, a str, bytes,
    something JSON-serialisable, or ``(status, any of those[, headers])``; the default
    answer is 200.  Any exception answers 500 and QStash retries; raise
    ``RetryLater(seconds)`` to set when, or ``NonRetryableError`` to answer 489 and send
    the message to the dead-letter queue instead.
    """
    # Replace with your logic, e.g. `order = message.json()`.
    return {"received": message.message_id}


# -------------------------------------------------------------------------------------


def lambda_handler(event: dict[str, object], context: object) -> dict[str, object]:
    """The Lambda entry point: verify the event, call ``handle``, answer QStash."""
    return serve_lambda(event, handle, context=context)
