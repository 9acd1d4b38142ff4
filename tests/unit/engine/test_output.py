from gptapi.engine.output import OutputText


def feed_all(out: OutputText, pieces: list[bytes]) -> str:
    released = "".join(out.feed(p) for p in pieces)
    return released + out.finish()


def test_plain_text_passes_through() -> None:
    out = OutputText(())
    assert feed_all(out, [b"Hello", b", ", b"world"]) == "Hello, world"
    assert not out.stopped


def test_stop_string_cuts_text_before_it() -> None:
    out = OutputText(("\n",))
    assert feed_all(out, [b" Paris", b".", b"\n", b"Next"]) == " Paris."
    assert out.stopped
    assert out.text == " Paris."


def test_stop_string_split_across_tokens_is_held_back_then_cut() -> None:
    out = OutputText(("END",))
    assert out.feed(b"abc E") == "abc "
    assert out.feed(b"N") == ""
    assert out.feed(b"D tail") == ""
    assert out.stopped
    assert out.text == "abc "


def test_held_back_prefix_is_released_when_it_does_not_complete() -> None:
    out = OutputText(("END",))
    assert out.feed(b"abc EN") == "abc "
    assert out.feed(b"Z") == "ENZ"
    assert not out.stopped


def test_multibyte_character_split_across_tokens_is_never_broken() -> None:
    snowman = "☃".encode()
    out = OutputText(())
    assert out.feed(snowman[:1]) == ""
    assert out.feed(snowman[1:2]) == ""
    assert out.feed(snowman[2:] + b"!") == "☃!"


def test_earliest_of_several_stop_strings_wins() -> None:
    out = OutputText(("world", "lo"))
    assert feed_all(out, [b"hello world"]) == "hel"


def test_text_after_stop_is_ignored() -> None:
    out = OutputText(("x",))
    out.feed(b"ax")
    assert out.feed(b"more") == ""
    assert out.finish() == ""
    assert out.text == "a"


def test_leading_blank_lines_can_be_skipped_so_a_newline_stop_ends_the_answer_not_starts_it() -> (
    None
):
    out = OutputText(("\n",), skip_leading_whitespace=True)
    assert feed_all(out, [b"\n", b"\n ", b"The council", b" voted.", b"\n", b"More"]) == (
        "The council voted."
    )
    kept = OutputText(("\n",))
    assert feed_all(kept, [b"\n", b"The council"]) == ""
