from api.redact import mask_token


def test_it_masks_the_token_in_a_url():
    url = "wss://ws.eodhistoricaldata.com/ws/us?api_token=abc123.XYZ&x=1"
    assert mask_token(url) == "wss://ws.eodhistoricaldata.com/ws/us?api_token=***&x=1"


def test_it_masks_every_occurrence_in_free_text():
    text = "failed GET /news?api_token=s3cret and /ws?API_TOKEN=other"
    masked = mask_token(text)
    assert "s3cret" not in masked
    assert "other" not in masked
    assert masked.count("***") == 2


def test_it_leaves_text_without_a_token_alone():
    assert mask_token("ws://127.0.0.1:8765/ws/us") == "ws://127.0.0.1:8765/ws/us"


def test_it_stops_at_punctuation_after_the_token():
    assert mask_token("at wss://h/ws?api_token=k3y, subscribed") == (
        "at wss://h/ws?api_token=***, subscribed"
    )
