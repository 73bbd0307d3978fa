"""Specification of `callmood.audio`: every promised format decodes; bad input fails clearly."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile
from fixtures_audio import (
    CountingReader,
    PipeReader,
    aligned_correlation,
    encode_with_ffmpeg,
    g711_wav_bytes,
    peak_frequency,
    rms,
    tone,
)

from callmood.audio import (
    SAMPLE_RATE,
    Audio,
    AudioError,
    AudioNotFoundError,
    AudioTooLongError,
    ChannelError,
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    NotAudioError,
    audio_info,
    decode_g711,
    encode_telephone,
    iter_audio_blocks,
    load_audio,
    resample,
)
from callmood.errors import CallmoodError

# An angry, strongly acted RAVDESS sentence: loud enough to exercise every quantiser.
CLIP = "Actor_01/03-01-05-02-01-01-01.flac"


@pytest.fixture(scope="module")
def speech(ravdess_dir: Path) -> np.ndarray:
    """A real 16 kHz mono speech clip, float32 (frames,)."""
    samples, sample_rate = soundfile.read(ravdess_dir / CLIP, dtype="float32")
    assert sample_rate == SAMPLE_RATE
    return samples


@pytest.fixture
def stereo_call(tmp_path: Path) -> Path:
    """A 2 s stereo WAV: customer (left) hums 440 Hz, agent (right) 1000 Hz."""
    path = tmp_path / "call.wav"
    left, right = tone(440, 2.0, 16000), tone(1000, 2.0, 16000, amplitude=0.25)
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="PCM_16")
    return path


def write(path: Path, samples: np.ndarray, sample_rate: int, **kwargs) -> Path:
    soundfile.write(path, samples, sample_rate, **kwargs)
    return path


# --------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("subtype", "tolerance"),
    [
        ("PCM_U8", 1 / 128),
        ("PCM_16", 1 / 32768),
        ("PCM_24", 1e-6),
        ("PCM_32", 1e-7),
        ("FLOAT", 0.0),
        ("ULAW", 0.02),
        ("ALAW", 0.02),
    ],
)
def test_every_wav_encoding_of_real_speech_decodes_to_the_same_samples(
    tmp_path, speech, subtype, tolerance
):
    path = write(tmp_path / f"clip_{subtype}.wav", speech, 16000, subtype=subtype)

    audio = load_audio(path)

    assert isinstance(audio, Audio)
    assert audio.samples.dtype == np.float32
    assert audio.samples.shape == (1, len(speech))
    assert audio.sample_rate == 16000 and audio.original_sample_rate == 16000
    assert np.max(np.abs(audio.samples[0] - speech)) <= tolerance


@pytest.mark.parametrize(
    ("name", "format_name", "subtype"),
    [
        ("clip.aiff", "AIFF", "PCM_16"),
        ("clip.aifc", "AIFF", "FLOAT"),  # libsndfile writes float AIFF as AIFF-C
        ("clip.flac", "FLAC", "PCM_24"),
    ],
)
def test_aiff_aiff_c_and_flac_decode_losslessly(tmp_path, speech, name, format_name, subtype):
    path = write(tmp_path / name, speech, 16000, format=format_name, subtype=subtype)

    audio = load_audio(path)

    np.testing.assert_allclose(audio.samples[0], speech, atol=1 / 32768)


def test_aiff_c_file_named_wav_is_decoded_by_its_content(tmp_path, speech):
    # Little-endian 16-bit AIFF is stored as AIFF-C ('sowt'); the name claims WAV.
    path = write(tmp_path / "misnamed.wav", speech, 16000, format="AIFF", endian="LITTLE")
    assert path.read_bytes()[8:12] == b"AIFC"

    audio = load_audio(path)

    assert audio_info(path).format == "AIFF"
    np.testing.assert_allclose(audio.samples[0], speech, atol=1 / 32768)


def _soundfile_lossy(path: Path, speech: np.ndarray, format_name: str, subtype: str) -> Path:
    return write(path, speech, 16000, format=format_name, subtype=subtype)


LOSSY_FORMATS = {
    "ogg_vorbis": lambda path, speech: _soundfile_lossy(path, speech, "OGG", "VORBIS"),
    "ogg_opus": lambda path, speech: _soundfile_lossy(path, speech, "OGG", "OPUS"),
    "mp3": lambda path, speech: _soundfile_lossy(path, speech, "MP3", "MPEG_LAYER_III"),
    "m4a_aac": lambda path, speech: encode_with_ffmpeg(
        path, speech[None], 16000, container="ipod", codec="aac"
    ),
    "aac_adts": lambda path, speech: encode_with_ffmpeg(
        path, speech[None], 16000, container="adts", codec="aac"
    ),
    "webm_opus": lambda path, speech: encode_with_ffmpeg(
        path, speech[None], 16000, container="webm", codec="libopus", codec_rate=48000
    ),
}


@pytest.mark.parametrize("kind", sorted(LOSSY_FORMATS))
def test_lossy_formats_decode_to_the_same_speech_at_16khz(tmp_path, speech, kind):
    # Extensions deliberately say nothing: decoding goes by content.
    path = LOSSY_FORMATS[kind](tmp_path / f"{kind}.audio", speech)

    audio = load_audio(path)

    assert audio.sample_rate == 16000 and audio.num_channels == 1
    # AAC adds 1024 frames of priming and pads to whole 1024-frame packets.
    assert abs(audio.duration_seconds - len(speech) / 16000) < 0.2
    assert aligned_correlation(speech, audio.samples[0], max_lag=3000) > 0.9
    assert np.all(np.abs(audio.samples) <= 1.0)


@pytest.mark.parametrize(
    ("format_name", "subtype", "sample_rate"),
    [
        ("RF64", "PCM_16", 16000),
        ("W64", "PCM_16", 16000),
        ("CAF", "PCM_16", 16000),
        ("WAV", "IMA_ADPCM", 16000),
        ("WAV", "GSM610", 8000),  # libsndfile reads GSM 6.10 front to back only
    ],
)
def test_other_libsndfile_formats_and_wav_codecs_load(tmp_path, format_name, subtype, sample_rate):
    samples = tone(300, 1.0, sample_rate)
    path = write(tmp_path / "clip.bin", samples, sample_rate, format=format_name, subtype=subtype)

    audio = load_audio(path)

    assert audio_info(path).format == format_name
    assert audio.duration_seconds == pytest.approx(1.0, abs=0.05)
    assert peak_frequency(audio.samples[0], 16000) == pytest.approx(300, abs=2)


def test_formats_ffmpeg_reads_report_their_container_and_codec(tmp_path, speech):
    path = encode_with_ffmpeg(
        tmp_path / "call.m4a", speech[None], 16000, container="ipod", codec="aac"
    )

    info = audio_info(path)

    assert (info.format, info.codec, info.sample_rate, info.channels) == ("MP4", "AAC", 16000, 1)
    assert info.duration_seconds == pytest.approx(len(speech) / 16000, abs=0.1)


@pytest.mark.parametrize("original_rate", [8000, 24414, 44100, 96000])
def test_odd_sample_rates_are_resampled_to_16khz_keeping_pitch_and_length(tmp_path, original_rate):
    path = write(tmp_path / "tone.wav", tone(440, 1.5, original_rate), original_rate)

    audio = load_audio(path)

    assert audio.original_sample_rate == original_rate
    assert audio.samples.shape == (1, round(1.5 * original_rate * 16000 / original_rate))
    assert peak_frequency(audio.samples[0], 16000) == pytest.approx(440, abs=2)
    assert rms(audio.samples[0, 1000:-1000]) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_sample_rate_none_keeps_the_files_own_rate(tmp_path):
    path = write(tmp_path / "tone.wav", tone(440, 1.0, 24414), 24414)

    audio = load_audio(path, sample_rate=None)

    assert audio.sample_rate == 24414 and audio.samples.shape == (1, 24414)


def test_float_samples_beyond_full_scale_are_clipped_to_plus_minus_one(tmp_path):
    path = write(tmp_path / "hot.wav", tone(200, 0.5, 16000, amplitude=1.5), 16000, subtype="FLOAT")

    audio = load_audio(path)

    assert audio.samples.max() == 1.0 and audio.samples.min() == -1.0


# --------------------------------------------------------------------- channels


def test_stereo_call_keeps_customer_and_agent_channels_separate(stereo_call):
    audio = load_audio(stereo_call)

    assert audio.num_channels == 2 and audio.original_channels == 2
    assert peak_frequency(audio.samples[0], 16000) == pytest.approx(440, abs=2)
    assert peak_frequency(audio.samples[1], 16000) == pytest.approx(1000, abs=2)


def test_channel_selection_returns_only_the_requested_channels_in_order(stereo_call):
    agent = load_audio(stereo_call, channels=[1])
    swapped = load_audio(stereo_call, channels=[1, 0])

    assert agent.num_channels == 1 and agent.original_channels == 2
    assert peak_frequency(agent.samples[0], 16000) == pytest.approx(1000, abs=2)
    np.testing.assert_array_equal(swapped.samples[::-1], load_audio(stereo_call).samples)


def test_missing_channel_names_the_file_and_how_many_channels_it_has(stereo_call):
    with pytest.raises(ChannelError, match=r"call\.wav: channel 2 does not exist.*2 channels"):
        load_audio(stereo_call, channels=[2])
    with pytest.raises(ChannelError, match="channel -1 does not exist"):
        load_audio(stereo_call, channels=[-1])
    with pytest.raises(ChannelError, match="channels is empty"):
        load_audio(stereo_call, channels=[])


# --------------------------------------------------------------------- sources


def test_path_str_bytes_and_file_objects_give_the_same_audio(stereo_call):
    expected = load_audio(stereo_call).samples
    data = stereo_call.read_bytes()

    with open(stereo_call, "rb") as file:
        from_file = load_audio(file)
    from_pipe = load_audio(PipeReader(data))

    for audio in (load_audio(str(stereo_call)), load_audio(data), from_file, from_pipe):
        np.testing.assert_array_equal(audio.samples, expected)
    assert load_audio(data).source == "<bytes>"
    assert from_file.source == str(stereo_call)


def test_ffmpeg_formats_load_from_bytes_too(tmp_path, speech):
    path = encode_with_ffmpeg(
        tmp_path / "x.webm",
        speech[None],
        16000,
        container="webm",
        codec="libopus",
        codec_rate=48000,
    )

    np.testing.assert_array_equal(load_audio(path.read_bytes()).samples, load_audio(path).samples)


# --------------------------------------------------------------------- bad input


def test_missing_file_and_directory_are_named(tmp_path):
    with pytest.raises(AudioNotFoundError, match=r"nowhere\.wav: no such file"):
        load_audio(tmp_path / "nowhere.wav")
    with pytest.raises(AudioNotFoundError, match="is a directory"):
        load_audio(tmp_path)


def test_empty_file_is_an_empty_audio_error_naming_the_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")

    with pytest.raises(EmptyAudioError, match=r"empty\.wav: the file is empty \(0 bytes\)"):
        load_audio(path)
    with pytest.raises(EmptyAudioError):
        load_audio(b"")


def test_valid_header_without_frames_is_empty_audio(tmp_path):
    path = write(tmp_path / "silence.wav", np.zeros(0, np.float32), 16000, subtype="PCM_16")

    with pytest.raises(EmptyAudioError, match=r"silence\.wav: holds no audio"):
        load_audio(path)


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"customer_id,emotion\n42,angry\n" * 20, "text"),
        (bytes(range(256)) * 16, "binary data"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "no audio stream"),
    ],
)
def test_text_garbage_and_images_are_not_audio(tmp_path, content, looks_like):
    path = tmp_path / "upload.wav"
    path.write_bytes(content)

    with pytest.raises(NotAudioError, match=rf"upload\.wav: not an audio file.*{looks_like}"):
        load_audio(path)


def test_wav_cut_mid_data_is_corrupt_not_silently_shortened(tmp_path, speech):
    data = write(tmp_path / "full.wav", speech, 16000).read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(CorruptAudioError, match=r"cut\.wav: truncated audio file.*50%"):
        load_audio(path)
    with pytest.raises(CorruptAudioError):
        audio_info(path)


def test_wav_with_a_broken_header_is_corrupt(tmp_path, speech):
    data = bytearray(write(tmp_path / "full.wav", speech, 16000).read_bytes())
    data[12:36] = b"\xff" * 24  # the 'fmt ' chunk
    path = tmp_path / "broken.wav"
    path.write_bytes(bytes(data))

    with pytest.raises(CorruptAudioError, match=r"broken\.wav: damaged audio file"):
        load_audio(path)


@pytest.mark.parametrize("kind", ["flac", "aiff", "ogg_vorbis", "mp3", "m4a_aac", "webm_opus"])
def test_truncated_compressed_and_container_files_are_corrupt(tmp_path, speech, kind):
    writers = {
        "flac": lambda path: write(path, speech, 16000, format="FLAC"),
        "aiff": lambda path: write(path, speech, 16000, format="AIFF"),
        **LOSSY_FORMATS,
    }
    make = writers[kind]
    data = make(tmp_path / "full") if kind in ("flac", "aiff") else make(tmp_path / "full", speech)
    data = data.read_bytes()

    with pytest.raises(CorruptAudioError, match="<bytes>: .*(truncated|damaged)"):
        load_audio(data[: len(data) * 2 // 3])


def test_ogg_cut_exactly_between_pages_is_corrupt(tmp_path, speech):
    data = write(tmp_path / "full.ogg", speech, 16000, format="OGG", subtype="VORBIS").read_bytes()
    page_starts = [i for i in range(len(data)) if data.startswith(b"OggS", i)]
    cut = data[: page_starts[len(page_starts) // 2]]

    with pytest.raises(CorruptAudioError, match="without the end-of-stream page"):
        load_audio(cut)


def test_too_long_audio_is_refused_from_the_header_before_decoding(tmp_path):
    data = write(tmp_path / "long.wav", tone(300, 60.0, 16000), 16000).read_bytes()
    reader = CountingReader(data, "long.wav")

    with pytest.raises(AudioTooLongError, match=r"long\.wav: audio is 60\.0 s long.*limit of 10 s"):
        load_audio(reader, max_seconds=10)
    assert reader.bytes_read < len(data) / 10
    assert load_audio(data, max_seconds=60).duration_seconds == 60.0


def test_too_long_audio_without_a_length_header_is_stopped_while_decoding(tmp_path, speech):
    # ADTS AAC has no length header; FFmpeg only estimates one from the bitrate.
    long_speech = np.tile(speech, 4)
    path = encode_with_ffmpeg(
        tmp_path / "long.aac", long_speech[None], 16000, container="adts", codec="aac"
    )

    with pytest.raises(AudioTooLongError, match=r"long\.aac: audio is .* over the limit of 5 s"):
        load_audio(path, max_seconds=5)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_samples_in_float_files_are_invalid(tmp_path, bad_value):
    samples = tone(200, 1.0, 16000)
    samples[8000] = bad_value
    path = write(tmp_path / "float.wav", samples, 16000, subtype="FLOAT")

    with pytest.raises(InvalidSamplesError, match=r"float\.wav: 1 samples .*first at 0\.500 s"):
        load_audio(path)
    with pytest.raises(InvalidSamplesError):
        list(iter_audio_blocks(path, block_seconds=0.25))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": 0}, "sample_rate must be a positive"),
        ({"sample_rate": 16000.0}, "sample_rate must be an integer"),
        ({"max_seconds": -1}, "max_seconds must be positive"),
        ({"channels": "left"}, "channels must be a list"),
    ],
)
def test_bad_arguments_are_audio_errors(stereo_call, kwargs, message):
    with pytest.raises(AudioError, match=message):
        load_audio(stereo_call, **kwargs)


def test_unsupported_source_types_are_audio_errors(stereo_call):
    with pytest.raises(AudioError, match="got int"):
        load_audio(123)
    with open(stereo_call) as text_file, pytest.raises(AudioError, match="text mode"):
        load_audio(text_file)


def test_every_audio_error_is_a_callmood_error():
    for error in (
        AudioNotFoundError,
        EmptyAudioError,
        NotAudioError,
        CorruptAudioError,
        AudioTooLongError,
        InvalidSamplesError,
        ChannelError,
    ):
        assert issubclass(error, AudioError) and issubclass(error, CallmoodError)


# --------------------------------------------------------------------- header info


def test_audio_info_reads_rate_channels_and_length_from_the_header(tmp_path):
    samples = np.stack([tone(440, 3.0, 24414), tone(880, 3.0, 24414)], axis=1)
    data = write(tmp_path / "call.wav", samples, 24414, subtype="PCM_24").read_bytes()
    reader = CountingReader(data, "call.wav")

    info = audio_info(reader)

    assert (info.sample_rate, info.channels, info.frames) == (24414, 2, 3 * 24414)
    assert (info.format, info.codec) == ("WAV", "PCM_24")
    assert info.duration_seconds == pytest.approx(3.0)
    assert reader.bytes_read < len(data) / 10


# --------------------------------------------------------------------- resampling


def test_resampling_a_1khz_tone_from_44100_to_16000_keeps_frequency_and_amplitude():
    original = tone(1000, 2.0, 44100, amplitude=0.5)

    resampled = resample(original, 44100, 16000)

    assert resampled.dtype == np.float32 and resampled.shape == (32000,)
    assert peak_frequency(resampled, 16000) == pytest.approx(1000, abs=1)
    assert rms(resampled[500:-500]) == pytest.approx(rms(original), rel=0.001)


def test_resampling_removes_a_tone_above_the_new_nyquist_instead_of_aliasing_it():
    # A 7 kHz tone cannot exist at 8 kHz; without filtering it would alias to 1 kHz.
    original = tone(7000, 1.0, 48000, amplitude=0.5)

    resampled = resample(original, 48000, 8000)

    # Away from the edges, where switching the tone on and off is itself a broadband click.
    assert rms(resampled[200:-200]) < 1e-3 * rms(original)  # below -60 dB


def test_resample_works_along_the_last_axis_of_any_shape():
    signals = np.stack([tone(f, 1.0, 48000) for f in (300, 600, 900, 1200)]).reshape(2, 2, -1)

    resampled = resample(signals, 48000, 16000)

    assert resampled.shape == (2, 2, 16000)
    np.testing.assert_array_equal(resampled[1, 0], resample(signals[1, 0], 48000, 16000))
    assert peak_frequency(resampled[1, 1], 16000) == pytest.approx(1200, abs=1)


# --------------------------------------------------------------------- blocks


def test_blocks_concatenate_to_exactly_the_whole_file_load(tmp_path):
    rng = np.random.default_rng(7)
    samples = (0.1 * rng.standard_normal((int(7.3 * 44100), 2))).astype(np.float32)
    path = write(tmp_path / "call.wav", samples, 44100, subtype="FLOAT")

    blocks = list(iter_audio_blocks(path, block_seconds=1.0))

    assert [block.shape for block in blocks[:-1]] == [(2, 16000)] * 7
    assert blocks[-1].shape[0] == 2 and blocks[-1].dtype == np.float32
    whole = load_audio(path).samples
    np.testing.assert_allclose(np.concatenate(blocks, axis=1), whole, atol=1e-6)


def test_blocks_of_an_ffmpeg_format_match_the_whole_load_and_select_channels(tmp_path, speech):
    stereo = np.stack([speech, speech[::-1]])
    path = encode_with_ffmpeg(tmp_path / "call.m4a", stereo, 16000, container="ipod", codec="aac")

    blocks = list(iter_audio_blocks(path, block_seconds=0.5, sample_rate=8000, channels=[1]))

    whole = load_audio(path, sample_rate=8000, channels=[1]).samples
    np.testing.assert_allclose(np.concatenate(blocks, axis=1), whole, atol=1e-6)
    assert all(block.shape == (1, 4000) for block in blocks[:-1])


@pytest.mark.parametrize("channels", [None, [1, 0], [1]])
def test_blocks_at_the_files_own_rate_are_exact_separate_arrays_the_caller_may_keep(
    tmp_path, channels
):
    rng = np.random.default_rng(11)
    samples = (0.3 * rng.standard_normal((int(3.3 * 16000), 2))).astype(np.float32)
    samples[100] = [-1.0, 32767 / 32768]  # the extremes of 16-bit PCM
    path = write(tmp_path / "call.flac", samples, 16000, format="FLAC", subtype="PCM_16")

    # Kept, not consumed one by one: no block may be overwritten by the next.
    blocks = list(iter_audio_blocks(path, block_seconds=1.0, channels=channels))

    whole = load_audio(path, channels=channels).samples
    assert [block.shape[1] for block in blocks] == [16000, 16000, 16000, 4800]
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in blocks)
    assert not any(np.shares_memory(a, b) for a, b in zip(blocks, blocks[1:], strict=False))
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole)
    expected = samples.T if channels is None else samples.T[channels]
    np.testing.assert_array_equal(whole, np.round(expected * 32768).clip(-32768, 32767) / 32768)


def test_blocks_of_float_files_are_clipped_and_checked_only_in_the_channels_kept(tmp_path):
    samples = np.stack([tone(200, 1.0, 16000, amplitude=1.5), tone(300, 1.0, 16000)], axis=1)
    samples[12000, 1] = np.nan
    path = write(tmp_path / "float.wav", samples, 16000, subtype="FLOAT")

    left = np.concatenate(list(iter_audio_blocks(path, block_seconds=0.3, channels=[0])), axis=1)

    np.testing.assert_array_equal(left[0], np.clip(samples[:, 0], -1.0, 1.0))
    with pytest.raises(InvalidSamplesError, match=r"1 samples .*first at 0\.750 s, channel 0"):
        list(iter_audio_blocks(path, block_seconds=0.3, channels=[1, 0]))


def test_blocks_keep_memory_bounded_for_long_files(tmp_path):
    path = write(tmp_path / "long.wav", tone(300, 300.0, 16000, amplitude=0.1), 16000)
    block_bytes = 5 * 16000 * 4  # float32 samples of one 5 s block; the file holds 60

    tracemalloc.start()
    try:
        frames = sum(block.shape[1] for block in iter_audio_blocks(path, block_seconds=5.0))
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert frames == 300 * 16000
    # A few blocks in flight (decoded, channel-selected, re-chunked), never the whole file.
    assert peak_bytes < 10 * block_bytes


def test_blocks_check_the_file_before_the_first_block_and_raise_on_truncation(tmp_path, speech):
    path = write(tmp_path / "call.flac", speech, 16000, format="FLAC")
    data = path.read_bytes()

    with pytest.raises(ChannelError):
        iter_audio_blocks(path, channels=[1])
    with pytest.raises(CorruptAudioError):
        list(iter_audio_blocks(data[: len(data) // 2], block_seconds=0.5))


# --------------------------------------------------------------------- telephone


def test_8khz_mulaw_and_alaw_wavs_from_a_phone_system_load_at_16khz(tmp_path):
    for subtype in ("ULAW", "ALAW"):
        path = write(tmp_path / f"phone_{subtype}.wav", tone(500, 2.0, 8000), 8000, subtype=subtype)

        audio = load_audio(path)

        assert audio.original_sample_rate == 8000 and audio.samples.shape == (1, 32000)
        assert peak_frequency(audio.samples[0], 16000) == pytest.approx(500, abs=1)


@pytest.mark.parametrize("codec", ["mulaw", "alaw"])
def test_every_g711_code_word_survives_decoding_and_reencoding(codec):
    codes = np.arange(256, dtype=np.uint8)
    if codec == "mulaw":
        codes = codes[codes != 0x7F]  # mu-law has two zeros (+0 0xFF, -0 0x7F); +0 is used

    decoded = decode_g711(codes.tobytes(), codec)
    reencoded = encode_telephone(decoded, 8000, codec)

    assert reencoded == codes.tobytes()


@pytest.mark.parametrize(("codec", "subtype"), [("mulaw", "ULAW"), ("alaw", "ALAW")])
def test_g711_decoding_matches_libsndfile_on_the_same_bytes(speech, codec, subtype):
    codes = encode_telephone(speech, 16000, codec)

    ours = decode_g711(codes, codec)
    theirs, sample_rate = soundfile.read(io.BytesIO(g711_wav_bytes(codes, codec)), dtype="float32")

    assert (
        sample_rate == 8000
        and soundfile.info(io.BytesIO(g711_wav_bytes(codes, codec))).subtype == subtype
    )
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("codec", ["mulaw", "alaw"])
def test_g711_round_trip_of_real_speech_loses_little(speech, codec):
    telephone_band = resample(speech, 16000, 8000)

    decoded = decode_g711(encode_telephone(telephone_band, 8000, codec), codec)

    assert decoded.shape == telephone_band.shape
    noise = decoded - telephone_band
    signal_to_noise_db = 20 * np.log10(rms(telephone_band) / rms(noise))
    assert signal_to_noise_db > 30
    # Companding: the error grows with the sample, staying within 1/16 of it.
    loud = np.abs(telephone_band) > 0.05
    assert np.all(np.abs(noise[loud]) <= np.abs(telephone_band[loud]) / 16)


def test_encode_telephone_resamples_to_8khz_and_interleaves_channels():
    stereo = np.stack([tone(300, 1.0, 16000), tone(600, 1.0, 16000)])

    codes = encode_telephone(stereo, 16000, "alaw")
    decoded = decode_g711(codes, "alaw", channels=2)

    assert len(codes) == 2 * 8000 and decoded.shape == (2, 8000)
    assert peak_frequency(decoded[1], 8000) == pytest.approx(600, abs=1)


def test_unknown_g711_codec_is_an_audio_error():
    with pytest.raises(AudioError, match="codec must be one of mulaw, alaw"):
        encode_telephone(tone(300, 0.1, 8000), 8000, "g729")
    with pytest.raises(AudioError, match="codec must be one of"):
        decode_g711(b"\xff\xff", "pcmu")
