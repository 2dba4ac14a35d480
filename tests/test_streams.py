"""`tmics derain` keeps every stream, chapter and tag of its input wherever the output container can hold
it (subtitles, attachments, cover art, chapters, container and stream tags, dispositions), and names in
one warning what it cannot keep."""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.videos import audio_packets, decode, encode_clip, moving_texture
from tmics_cli import cli
from tmics_cli.cli import app
from tmics_cli.derain import derain_video
from tmics_cli.video.reader import VideoWarning
from tmics_cli.video.streams import container_tags, stream_tags

ASS_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
    b"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
    b"Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
    b"Alignment, MarginL, MarginR, MarginV, Encoding\n"
    b"Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n"
    b"[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)
FONT = bytes(range(256)) * 3  # stands for a .ttf: attachments are copied byte for byte, never read
TAGS = {
    "title": "Rain over the bridge",
    "creation_time": "2024-05-01T10:00:00.000000Z",
    "location": "+48.8584+002.2945/",
    "com.apple.quicktime.location.ISO6709": "+48.8584+002.2945+035.000/",
    "comment": "shot once",
}
# (start ms, end ms, text) of the two subtitle streams: SubRip (English) and ASS (German)
SRT_CUES = [(100, 400, b"Hello"), (500, 800, b"World")]
ASS_CUES = [(300, 700, b"Hallo")]
CHAPTERS = [(0, 400, "Intro"), (400, 1000, "Rain")]  # ms
MS = Fraction(1, 1000)


def _packet(data: bytes, pts: int, duration: int, stream) -> object:
    import av

    packet = av.Packet(data)
    packet.pts, packet.dts, packet.duration, packet.time_base, packet.stream = pts, pts, duration, MS, stream
    return packet


def make_rich_mkv(
    path: Path,
    frames: int = 25,
    w: int = 32,
    h: int = 24,
    pgs: bool = False,
    cover: bytes | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """A 25 fps MKV as a careful user's footage: H.264 video (language, title, default) + AAC audio
    (language, title) + SubRip (English, default) and ASS (German, forced) subtitles + a font attachment +
    two chapters + container tags (creation time, location); `pgs`: a bitmap subtitle stream too; `cover`:
    a JPEG attached as cover art; `tags`: other container tags than TAGS."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.time_base = video.codec_context.time_base = MS
        video.options = {"crf": "20", "preset": "ultrafast", "g": "5"}  # keyframes every 0.2 s
        video.metadata.update({"language": "eng", "title": "Main camera"})
        video.disposition = av.stream.Disposition.default
        sound = out.add_stream("aac", rate=16000, layout="mono")
        sound.metadata.update({"language": "fra", "title": "Commentary"})
        srt = out.add_stream("subrip")
        srt.codec_context.subtitle_header = ASS_HEADER
        srt.time_base = MS
        srt.metadata.update({"language": "eng", "title": "English"})
        srt.disposition = av.stream.Disposition.default
        ass = out.add_stream("ass")
        ass.codec_context.subtitle_header = ASS_HEADER
        ass.time_base = MS
        ass.metadata.update({"language": "ger"})
        ass.disposition = av.stream.Disposition.forced
        bitmap = out.add_mux_stream("hdmv_pgs_subtitle", time_base=MS) if pgs else None
        out.add_attachment("font.ttf", "font/ttf", FONT)
        if cover is not None:
            out.add_attachment("cover.jpg", "image/jpeg", cover)
        out.metadata.update(TAGS if tags is None else tags)
        out.set_chapters(
            [
                {"id": i + 1, "start": s, "end": e, "time_base": MS, "metadata": {"title": t}}
                for i, (s, e, t) in enumerate(CHAPTERS)
            ]
        )
        subtitles = [(s, e, txt, srt) for s, e, txt in SRT_CUES]
        subtitles += [(s, e, b"0,0,Default,,0,0,0,," + txt, ass) for s, e, txt in ASS_CUES]
        if bitmap is not None:
            subtitles.append((200, 600, b"\x16\x00\x13" + bytes(19), bitmap))
        subtitles.sort(key=lambda cue: cue[0])
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(moving_texture(i, h, w), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = i * 40, MS
            for packet in video.encode(frame):
                out.mux(packet)
            while subtitles and subtitles[0][0] <= i * 40:
                start, end, text, stream = subtitles.pop(0)
                out.mux(_packet(text, start, end - start, stream))
        for packet in video.encode(None):
            out.mux(packet)
        samples = 16000 * frames // 25
        wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16000)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(wave[start : start + 1024][None], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, start
            for packet in sound.encode(chunk):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)
    return path


def probe(path: Path) -> dict:
    """What a file holds: streams (type, codec, tags, disposition flags), subtitle cues as (start s,
    end s, text), attachments, chapters (start s, end s, title) and container tags (keys lower-cased)."""
    import av

    with av.open(str(path)) as container:
        streams = []
        for stream in container.streams:
            ctx = stream.codec_context
            streams.append(
                {
                    "type": stream.type,
                    "codec": ctx.codec.canonical_name if ctx is not None else None,
                    "tags": {k.lower(): v for k, v in stream.metadata.items()},
                    "disposition": stream.disposition,
                    "data": stream.data if stream.type == "attachment" else None,
                }
            )
        chapters = [
            (float(c["start"] * c["time_base"]), float(c["end"] * c["time_base"]), c["metadata"].get("title"))
            for c in container.chapters()
        ]
        tags = {k.lower(): v for k, v in container.metadata.items()}
        cues: dict[int, list[tuple[float, float, bytes]]] = {}
        subtitle_streams = [s for s in container.streams.subtitles if s.codec_context.codec.text_sub]
        for packet in container.demux(*subtitle_streams) if subtitle_streams else []:
            if not packet.size:
                continue
            subtitle = packet.stream.codec_context.decode2(packet)
            texts = [rect.ass.split(b",", 8)[-1] for rect in subtitle or []]
            if texts and texts[0]:  # MP4 fills the gaps between cues with empty samples
                start = float(packet.pts * packet.time_base)
                cues.setdefault(packet.stream.index, []).append(
                    (round(start, 3), round(start + float(packet.duration * packet.time_base), 3), texts[0])
                )
    return {"streams": streams, "chapters": chapters, "tags": tags, "cues": cues}


def _derain(src: Path, dst: Path, weights: Path, **kw) -> list[str]:
    """Derain and return the VideoWarning messages it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        derain_video(src, dst, weights=weights, device="cpu", **kw)
    return [str(w.message) for w in caught if issubclass(w.category, VideoWarning)]


def _by_type(info: dict, kind: str) -> list[dict]:
    return [s for s in info["streams"] if s["type"] == kind]


def _seconds(cues: list[tuple[int, int, bytes]], shift: float = 0.0) -> list[tuple[float, float, bytes]]:
    return [(round(s / 1000 - shift, 3), round(e / 1000 - shift, 3), t) for s, e, t in cues]


def test_mkv_keeps_every_stream_tag_chapter_and_attachment(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_rich_mkv(tmp_path / "in.mkv")
    caught = _derain(src, tmp_path / "out.mkv", tiny_weights)
    assert caught == []  # MKV holds everything: nothing to warn of
    before, after = probe(src), probe(tmp_path / "out.mkv")
    kinds = lambda info: [(s["type"], s["codec"]) for s in info["streams"]]  # noqa: E731
    assert (
        kinds(after)
        == kinds(before)
        == [
            ("video", "h264"),
            ("audio", "aac"),
            ("subtitle", "subrip"),
            ("subtitle", "ass"),
            ("attachment", None),
        ]
    )
    for old, new in zip(before["streams"], after["streams"], strict=True):
        assert new["disposition"] == old["disposition"], old
        for key in ("language", "title", "filename", "mimetype"):
            assert new["tags"].get(key) == old["tags"].get(key), (key, old)
    video, sound, srt, ass, font = after["streams"]
    assert (video["tags"]["language"], video["tags"]["title"]) == ("eng", "Main camera")
    assert video["disposition"] & 1
    assert (sound["tags"]["language"], sound["tags"]["title"]) == ("fra", "Commentary")
    assert srt["disposition"] & 1 and not srt["disposition"] & 64 and srt["tags"]["language"] == "eng"
    assert ass["disposition"] & 64 and ass["tags"]["language"] == "ger"
    assert font["data"] == FONT and font["tags"]["filename"] == "font.ttf"
    assert after["cues"] == before["cues"] == {2: _seconds(SRT_CUES), 3: _seconds(ASS_CUES)}
    assert after["chapters"] == before["chapters"] == [(s / 1000, e / 1000, t) for s, e, t in CHAPTERS]
    for key, value in TAGS.items():
        assert after["tags"][key.lower()] == value, key
    assert audio_packets(tmp_path / "out.mkv") == audio_packets(src)
    assert len(decode(tmp_path / "out.mkv")[0]) == 25


def test_mp4_turns_subtitles_into_mov_text_and_names_the_attachment(tmp_path: Path, tiny_weights: Path):
    src = make_rich_mkv(tmp_path / "in.mkv")
    dst = tmp_path / "out.mp4"
    with warnings.catch_warnings():  # as `tmics` runs: warnings shown as `warning:` lines
        warnings.simplefilter("always")
        warnings.showwarning = cli._show_warning
        result = CliRunner().invoke(app, ["derain", str(src), "-o", str(dst), "--weights", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1, result.output
    assert "font.ttf" in lines[0] and "1 attachment" in lines[0] and "mp4 cannot hold" in lines[0]
    assert ".mkv" in lines[0] and "subtitle stream" not in lines[0]  # the subtitles are kept, converted
    after = probe(dst)
    subs = _by_type(after, "subtitle")
    assert [(s["codec"], s["tags"]["language"]) for s in subs] == [("mov_text", "eng"), ("mov_text", "ger")]
    assert _by_type(after, "attachment") == []
    assert sorted(after["cues"].values()) == sorted([_seconds(SRT_CUES), _seconds(ASS_CUES)])
    assert after["chapters"] == [(s / 1000, e / 1000, t) for s, e, t in CHAPTERS]
    for key, value in TAGS.items():
        assert after["tags"][key.lower()] == value, key
    video, sound = _by_type(after, "video")[0], _by_type(after, "audio")[0]
    assert video["tags"]["language"] == "eng" and sound["tags"]["language"] == "fra"
    assert audio_packets(dst) == audio_packets(src)
    # and on from that MP4: to MP4 again (nothing lost, the chapter track is no stream to warn of), to MKV
    assert _derain(dst, tmp_path / "again.mp4", tiny_weights) == []
    again = probe(tmp_path / "again.mp4")
    assert [s["tags"].get("name") for s in again["streams"][:3]] == ["Main camera", "Commentary", "English"]
    assert again["cues"] == after["cues"] and again["chapters"] == after["chapters"]
    iso6709 = "com.apple.quicktime.location.ISO6709"
    assert again["tags"][iso6709.lower()] == TAGS[iso6709]
    assert _derain(dst, tmp_path / "back.mkv", tiny_weights) == []
    back = probe(tmp_path / "back.mkv")
    assert [s["codec"] for s in _by_type(back, "subtitle")] == ["ass", "ass"]  # MKV takes no mov_text
    assert [s["tags"].get("title") for s in back["streams"][:3]] == ["Main camera", "Commentary", "English"]
    zero = decode(tmp_path / "back.mkv")[2][0]  # MKV may shift all streams alike (AAC priming)
    shifted = [[(round(a - zero, 3), round(b - zero, 3), t) for a, b, t in c] for c in back["cues"].values()]
    assert sorted(shifted) == sorted(after["cues"].values())


def test_start_and_end_cut_and_shift_subtitles_and_chapters(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_rich_mkv(tmp_path / "in.mkv")
    for suffix in (".mkv", ".mp4"):
        dst = tmp_path / f"cut{suffix}"
        _derain(src, dst, tiny_weights, start=0.2, end=0.8)
        after = probe(dst)
        # cues shown across a cut are shortened to it, and everything moves 0.2 s earlier
        srt = [(0.0, 0.2, b"Hello"), (0.3, 0.6, b"World")]
        assert sorted(after["cues"].values()) == sorted([srt, [(0.1, 0.5, b"Hallo")]]), suffix
        assert after["chapters"] == [(0.0, 0.2, "Intro"), (0.2, 0.6, "Rain")], suffix
        times = decode(dst)[2]
        assert len(times) == 15 and times[0] == pytest.approx(0.0, abs=1e-3), suffix
    late = make_rich_mkv(tmp_path / "late.mkv")
    _derain(late, tmp_path / "late.mkv.mkv", tiny_weights, start=0.45)
    after = probe(tmp_path / "late.mkv.mkv")
    assert after["cues"] == {2: [(0.05, 0.35, b"World")], 3: [(0.0, 0.25, b"Hallo")]}
    assert after["chapters"] == [(0.0, 0.55, "Rain")]


def test_bitmap_subtitles_and_cover_art(tmp_path: Path, tiny_weights: Path) -> None:
    import cv2

    jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), 200, np.uint8))[1].tobytes()
    src = make_rich_mkv(tmp_path / "in.mkv", pgs=True, cover=jpeg)
    assert _derain(src, tmp_path / "out.mkv", tiny_weights) == []
    after = probe(tmp_path / "out.mkv")
    assert [s["codec"] for s in _by_type(after, "subtitle")] == ["subrip", "ass", "hdmv_pgs_subtitle"]
    covers = _by_type(after, "video")[1:]  # MKV shows an image attachment as a video stream
    assert len(covers) == 1 and covers[0]["disposition"] & 1024  # attached_pic
    assert covers[0]["tags"]["filename"] == "cover.jpg"
    caught = _derain(src, tmp_path / "out.mp4", tiny_weights)
    assert len(caught) == 1
    assert "subtitle stream 4 (hdmv_pgs_subtitle)" in caught[0] and "1 attachment (font.ttf)" in caught[0]
    # the MP4 muxer leaves cover art out when it writes custom tags (the location): the tags win
    assert "video stream 6 (mjpeg cover art" in caught[0]
    after = probe(tmp_path / "out.mp4")
    assert [s["codec"] for s in _by_type(after, "subtitle")] == ["mov_text", "mov_text"]
    assert len(_by_type(after, "video")) == 1 and after["tags"]["com.apple.quicktime.location.iso6709"]
    plain = make_rich_mkv(tmp_path / "plain.mkv", cover=jpeg, tags={"title": "Rain"})
    caught = _derain(plain, tmp_path / "plain.mp4", tiny_weights)
    assert len(caught) == 1 and "cover" not in caught[0]  # MP4 holds cover art: an attached picture
    after = probe(tmp_path / "plain.mp4")
    covers = _by_type(after, "video")[1:]
    assert len(covers) == 1 and covers[0]["codec"] == "mjpeg" and covers[0]["disposition"] & 1024
    assert after["tags"]["title"] == "Rain"


def test_webm_ts_and_no_audio(tmp_path: Path, tiny_weights: Path) -> None:
    src = make_rich_mkv(tmp_path / "in.mkv", frames=10)
    caught = _derain(src, tmp_path / "out.webm", tiny_weights)
    after = probe(tmp_path / "out.webm")
    assert [s["codec"] for s in _by_type(after, "subtitle")] == ["webvtt", "webvtt"]
    assert [s["tags"]["language"] for s in _by_type(after, "subtitle")] == ["eng", "ger"]
    assert len(caught) == 1 and "font.ttf" in caught[0] and "webm cannot hold" in caught[0]
    assert after["tags"]["location"] == TAGS["location"]
    caught = _derain(src, tmp_path / "out.ts", tiny_weights)
    assert len(caught) == 2 and "subtitle stream 2 (subrip)" in caught[0] and "2 chapters" in caught[0]
    # read back from the written file: what the muxer left out without a word
    kept = "the title of video stream 0, the language of video stream 0, the title of audio stream 1"
    assert caught[1].endswith(f"(ts cannot hold them): {kept}"), caught[1]
    assert len(decode(tmp_path / "out.ts")[0]) == 10 and audio_packets(tmp_path / "out.ts")
    assert _derain(src, tmp_path / "silent.mkv", tiny_weights, audio=False) == []
    after = probe(tmp_path / "silent.mkv")
    assert [s["type"] for s in after["streams"]] == ["video", "subtitle", "subtitle", "attachment"]


@pytest.mark.parametrize(
    ("suffix", "lost"),
    [
        (".mov", "the forced flag of subtitle stream 3"),
        (".avi", "the language of video stream 0, the language of audio stream 1"),
    ],
)
def test_titles_languages_and_flags_a_muxer_leaves_out_are_named(
    tmp_path: Path, tiny_weights: Path, suffix: str, lost: str
) -> None:
    """Muxers drop some stream tags and dispositions without an error (ffmpeg -map 0 loses them too); the
    output is read back and what it lost is named. MP4 and MOV keep titles (as `name`): not named."""
    src = make_rich_mkv(tmp_path / "in.mkv", frames=10)
    caught = _derain(src, tmp_path / f"out{suffix}", tiny_weights)
    assert caught[-1].endswith(f"({suffix[1:]} cannot hold them): {lost}"), caught
    assert len(decode(tmp_path / f"out{suffix}")[0]) == 10


def test_tags_that_describe_the_old_encoding_are_dropped() -> None:
    tags = {"DURATION": "0:01", "BPS-eng": "1200", "NUMBER_OF_FRAMES": "25", "language": "eng", "title": "x"}
    assert stream_tags(tags, reencoded=False) == {"language": "eng", "title": "x"}
    assert stream_tags({"encoder": "Lavc libx264", "handler_name": "V"}, True) == {"handler_name": "V"}
    assert stream_tags({"ENCODER": "Lavc aac"}, reencoded=False) == {"ENCODER": "Lavc aac"}  # copied as is
    assert container_tags({"software": "Lavf58.76.100", "title": "x"}) == {"title": "x"}  # AVI's ISFT
    old = {"encoder": "Lavf", "major_brand": "isom", "creation_time": "2024", "LOCATION": "+1+2/"}
    assert container_tags(old) == {"creation_time": "2024", "LOCATION": "+1+2/"}


def test_audio_whose_parameters_the_demuxer_never_found_is_named_not_kept(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """An MPEG-TS whose audio the probe did not reach (its first packet's time wrapped, 26.5 h ahead):
    no sample rate, no channels. The whole derain ran and then failed to write frame 0 ("Invalid
    argument"); ffmpeg leaves such a stream out, and so does tmics, saying so."""
    import av

    from tests.videos import make_video

    src = make_video(tmp_path / "in.ts", frames=60, fps=2, audio=True, time_base=Fraction(1, 90000))
    with av.open(str(src)) as probe:
        if probe.streams.audio[0].codec_context.sample_rate:
            pytest.skip("this PyAV muxes the fixture's audio where the probe finds it")
    messages = _derain(src, tmp_path / "out.mkv", tiny_weights)
    assert len(messages) == 1 and "audio stream 1 (aac, channels unknown)" in messages[0], messages
    frames, _, _, _ = decode(tmp_path / "out.mkv")
    assert len(frames) == 60


def _with_timecode(src: Path, dst: Path) -> Path:
    """`src`'s video remuxed into `dst` with a start timecode (a tmcd track in MOV/MP4, a tag in MKV)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        template = inp.streams.video[0]
        stream = out.add_stream_from_template(template)
        stream.time_base = template.time_base
        stream.codec_context.framerate = template.average_rate
        stream.metadata["timecode"] = "01:00:00:00"
        for packet in inp.demux(template):
            if packet.size:
                packet.stream = stream
                out.mux(packet)
    return dst


@pytest.mark.parametrize(("kind", "out"), [(".mov", ".mov"), (".mkv", ".mp4")])
def test_a_timecode_is_kept_into_mov_and_mp4(tmp_path: Path, tiny_weights: Path, kind: str, out: str) -> None:
    """A camera's start timecode: MOV/MP4 write it as a timecode track built from the video's frame rate.
    The joined output's stream, copied from a piece, read its rate off the time base (12800 fps), and
    closing the file failed with "Invalid argument" after the whole derain."""
    from tests.videos import make_video

    src = _with_timecode(make_video(tmp_path / "plain.mp4", frames=12), tmp_path / f"in{kind}")
    assert _derain(src, tmp_path / f"out{out}", tiny_weights) == []
    after = probe(tmp_path / f"out{out}")
    assert after["streams"][0]["tags"]["timecode"] == "01:00:00:00"
    assert [s["type"] for s in after["streams"]] == ["video", "data"]  # the timecode track, written anew
    assert len(decode(tmp_path / f"out{out}")[0]) == 12


def _with_pcm(src: Path, dst: Path, layout: str, samples: int = 7680) -> Path:
    """`src`'s video (12 frames at 25 fps) and PCM audio in `layout` (Matroska keeps only its channel
    count), as long as the video unless `samples` (at 16 kHz) says otherwise."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        template = inp.streams.video[0]
        video = out.add_stream_from_template(template)
        video.time_base = template.time_base
        video.codec_context.framerate = template.average_rate
        sound = out.add_stream("pcm_s16le", rate=16000, layout=layout)
        channels = av.AudioLayout(layout).nb_channels
        tone = 3000 * np.sin(np.arange(samples) / 9)
        for start in range(0, samples, 768):
            gains = np.arange(1, channels + 1) / channels  # each channel its own loudness
            chunk = (tone[start : start + 768, None] * gains).astype(np.int16)  # (samples, channels)
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate, frame.pts = 16000, start
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)
        for packet in inp.demux(template):
            if packet.size:
                packet.stream = video
                out.mux(packet)
    return dst


def test_pcm_of_unordered_channels_is_kept_in_mp4_and_encoded_for_webm(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """Four channels of PCM in Matroska (no channel order stored): MP4 writes a layout box at close and
    refused it there, after the whole derain ("Invalid argument"). The trial write now reaches the close:
    MP4 copies the samples as they are under the usual layout of four channels, WebM's Opus takes them
    as quad; what no encoder takes (16 channels into MPEG-TS) is named, not a failure at the end."""
    import av

    from tests.videos import make_video

    plain = make_video(tmp_path / "plain.mp4", frames=12)
    src = _with_pcm(plain, tmp_path / "in.mkv", "quad")
    with av.open(str(src)) as check:
        assert check.streams.audio[0].codec_context.layout.name == "4 channels"  # the order is gone
    assert _derain(src, tmp_path / "out.mp4", tiny_weights) == []
    samples = b"".join(audio_packets(src))
    assert b"".join(audio_packets(tmp_path / "out.mp4")) == samples  # the very samples (MP4 packs them anew)
    assert _derain(src, tmp_path / "out.webm", tiny_weights) == []
    with av.open(str(tmp_path / "out.webm")) as out:
        assert out.streams.audio[0].codec_context.name == "opus"
        assert out.streams.audio[0].codec_context.channels == 4
    many = _with_pcm(plain, tmp_path / "many.mkv", "hexadecagonal")
    messages = _derain(many, tmp_path / "out.ts", tiny_weights)
    assert len(messages) == 1 and "audio stream 1 (pcm_s16le)" in messages[0], messages
    assert len(decode(tmp_path / "out.ts")[0]) == 12


def test_audio_that_runs_on_after_the_video_is_no_damage(tmp_path: Path, tiny_weights: Path) -> None:
    """Matroska states one duration for the file, here the audio's (1 s); the video's own (0.48 s) is in
    the DURATION tag its muxer wrote. Read by the file's, the whole video was told "stops after 12 of
    about 25 frames (the file is truncated or damaged)" and --strict refused it."""
    from tests.videos import make_video

    src = _with_pcm(make_video(tmp_path / "plain.mp4", frames=12), tmp_path / "in.mkv", "mono", 16000)
    result = CliRunner().invoke(
        app,
        ["derain", str(src), "-o", str(tmp_path / "out.mkv"), "--weights", str(tiny_weights),
         "--device", "cpu", "--strict"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "damaged" not in result.output and "warning" not in result.output
    assert "1 input, about 12 frames" in result.output  # reckoned from the video's duration
    assert len(decode(tmp_path / "out.mkv")[0]) == 12


def test_anamorphic_video_keeps_its_pixel_aspect_ratio(tmp_path: Path, tiny_weights: Path) -> None:
    """Non-square pixels (DVD, HDV, anamorphic): the output had square ones and played stretched."""
    import av

    def anamorphic(stream) -> None:  # noqa: ANN001 - a PyAV stream
        stream.codec_context.sample_aspect_ratio = Fraction(4, 3)

    src = encode_clip(tmp_path / "in.mp4", "libx264", "yuv420p", frames=6, setup=anamorphic)
    for suffix in (".mp4", ".mkv", ".mov", ".ts"):
        assert _derain(src, tmp_path / f"out{suffix}", tiny_weights) == [], suffix
        with av.open(str(tmp_path / f"out{suffix}")) as done:
            assert done.streams.video[0].sample_aspect_ratio == Fraction(4, 3), suffix
    messages = _derain(src, tmp_path / "out.webm", tiny_weights)  # PyAV cannot give WebM's muxer the ratio
    assert len(messages) == 1 and "the pixel aspect ratio 4:3 of the video" in messages[0], messages


def test_av1_output_joins(tmp_path: Path, tiny_weights: Path) -> None:
    """AV1 pieces read back through the decoder libdav1d; the join looked up an encoder of that name and
    every AV1 derain failed with "error: libdav1d"."""
    import av

    from tests.videos import make_video

    try:
        av.codec.Codec("libsvtav1", "w")
    except Exception:  # noqa: BLE001 - a PyAV build without it
        pytest.skip("this PyAV has no libsvtav1")
    src = make_video(tmp_path / "in.mp4", frames=6)
    for suffix in (".mkv", ".mp4"):
        _derain(src, tmp_path / f"out{suffix}", tiny_weights, codec="libsvtav1")
        with av.open(str(tmp_path / f"out{suffix}")) as done:
            assert done.streams.video[0].codec_context.codec.id == av.codec.Codec("libdav1d").id
        assert len(decode(tmp_path / f"out{suffix}")[0]) == 6


def test_a_rotation_the_output_cannot_hold_is_named(tmp_path: Path, tiny_weights: Path) -> None:
    """A phone clip's display rotation: MPEG-TS and AVI have no place for it, and PNG frames are stored
    unrotated; each dropped it without a word."""
    from tests.videos import make_video

    src = make_video(tmp_path / "in.mp4", frames=4, rotation=90)
    assert _derain(src, tmp_path / "out.mkv", tiny_weights) == []
    for out in ("out.ts", "out.avi", "frames"):
        messages = _derain(src, tmp_path / out, tiny_weights)
        assert len(messages) == 1 and "display rotation" in messages[0] and "90 degrees" in messages[0], out


def test_a_song_with_cover_art_is_no_video(tmp_path: Path, tiny_weights: Path) -> None:
    """An MP3 (or M4A) with its album cover was "derained" into a still video of one frame."""
    import av
    import numpy as np

    from tmics_cli.video.reader import VideoError

    song = tmp_path / "song.mp4"
    with av.open(str(song), "w") as out:
        sound = out.add_stream("aac", rate=16000, layout="mono")
        cover = out.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 32, 32, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24")
        for packet in [*cover.encode(picture.reformat(format="yuvj420p")), *cover.encode(None)]:
            out.mux(packet)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        for packet in [*sound.encode(chunk), *sound.encode(None)]:
            out.mux(packet)
    with av.open(str(song)) as check:
        assert [s.type for s in check.streams] == ["audio", "video"]
        assert int(check.streams.video[0].disposition) & 0x400  # kept as cover art by the muxer
    with pytest.raises(VideoError, match=r"has no video stream \(only cover art\)"):
        _derain(song, tmp_path / "out.mkv", tiny_weights)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.mp4"]


@pytest.mark.parametrize(
    ("suffix", "codec", "pix_fmt"), [(".mov", "png", "rgba"), (".webm", "libvpx-vp9", "yuva420p")]
)
def test_an_alpha_channel_is_named_and_its_tag_not_kept(
    tmp_path: Path, tiny_weights: Path, suffix: str, codec: str, pix_fmt: str
) -> None:
    """Transparency was dropped without a word, and WebM kept ALPHA_MODE=1 for a video without alpha."""
    import av

    def tagged(stream) -> None:  # noqa: ANN001 - a PyAV stream
        stream.metadata["alpha_mode"] = "1"

    src = encode_clip(tmp_path / f"in{suffix}", codec, pix_fmt, setup=tagged, alpha=128)
    messages = _derain(src, tmp_path / f"out{suffix}", tiny_weights)
    assert len(messages) == 1 and "has an alpha channel" in messages[0], messages
    with av.open(str(tmp_path / f"out{suffix}")) as done:
        assert not any(k.lower() == "alpha_mode" for k in done.streams.video[0].metadata)
