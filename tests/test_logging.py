import io
import json
import logging

from extractor._logging import configure_logging


def test_json_lines_and_redaction() -> None:
    stream = io.StringIO()
    configure_logging(log_format="json", secrets=["supersecret", "key-1234"], stream=stream)
    log = logging.getLogger("extractor")
    log.info("token supersecret and %s", "key-1234", extra={"snapshot_id": "S1"})
    line = json.loads(stream.getvalue().strip())
    assert line["message"] == "token *** and ***"
    assert line["snapshot_id"] == "S1"
    assert line["level"] == "info"
    assert "supersecret" not in stream.getvalue()
