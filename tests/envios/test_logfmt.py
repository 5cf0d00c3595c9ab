"""Log lines never carry a full phone number, even inside a message id or a gateway's text."""

from envios.logfmt import kv


def test_message_id_and_detail_are_scrubbed_but_ids_are_not():
    line = kv(
        "state_change",
        envio_id=1234567,
        message_id="true_5491123456789@c.us_3EB0ABCDEF",
        detail="INVALID_NUMBER: 5491123456789 is not on WhatsApp",
        phone="*********6789",
    )
    assert "5491123456789" not in line
    assert "message_id=true_*********6789@c.us_3EB0ABCDEF" in line
    assert "envio_id=1234567" in line  # ids are not personal data and stay whole


def test_message_id_keeps_its_unique_suffix_and_masks_only_the_number():
    line = kv("record_failed", envio_id=7, message_id="true_5491140100001@c.us_3EB0123456789ABCDEF")
    assert "message_id=true_*********0001@c.us_3EB0123456789ABCDEF" in line
    group = kv("record_failed", message_id="false_5491140100001-1600000000@g.us_3EB0F00D")
    assert "5491140100001" not in group and "@g.us_3EB0F00D" in group
    # an id of another shape: scrubbed
    assert "5491140100001" not in kv("x", message_id="5491140100001")
