"""Log lines never carry a full phone number, even inside a message id or a gateway's text."""

from sender.logfmt import kv


def test_message_id_and_detail_are_scrubbed_but_ids_are_not():
    line = kv("state_change", envio_id=1234567, message_id="true_5491123456789@c.us_3EB0ABCDEF",
              detail="INVALID_NUMBER: 5491123456789 is not on WhatsApp", phone="*********6789")
    assert "5491123456789" not in line
    assert "message_id=true_*********6789@c.us_3EB0ABCDEF" in line
    assert "envio_id=1234567" in line  # ids are not personal data and stay whole
