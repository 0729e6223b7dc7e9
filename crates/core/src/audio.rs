//! A phone profile's audio message: base64 of a PCM WAV file. The rules of
//! what the call can play (format, channels, rate, length) live here, so a
//! file the sender cannot play is refused when the profile is set; the
//! sender (`portcullis-notify`) reads the same header with [`Wav::parse`]
//! and converts the samples.

use std::time::Duration;

use base64::Engine as _;

/// Sample rate of G.711 telephony audio, what every message is played at.
pub const SAMPLE_RATE: u32 = 8000;
/// Longest audio message played; longer files are refused (a call ties up the queue).
pub const MAX_AUDIO_SECONDS: u32 = 30;
/// Sample rates accepted in a WAV file, in Hz.
pub const RATE_RANGE: (u32, u32) = (4000, 96_000);
/// Channel counts accepted in a WAV file.
pub const CHANNEL_RANGE: (u16, u16) = (1, 8);

/// The PCM data of a WAV file and how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wav<'a> {
    /// Interleaved channels per frame.
    pub channels: u16,
    /// Frames per second.
    pub rate: u32,
    /// Bytes per sample: 1 (8-bit unsigned) or 2 (16-bit signed little-endian).
    pub sample_width: usize,
    /// The `data` chunk (what a streaming writer left of it).
    pub data: &'a [u8],
}

impl<'a> Wav<'a> {
    /// Reads the header of a PCM WAV file (8 or 16 bit, 1-8 channels,
    /// 4-96 kHz; WAVE_FORMAT_EXTENSIBLE naming PCM too).
    pub fn parse(data: &'a [u8]) -> Result<Self, String> {
        if data.len() < 12 || &data[0..4] != b"RIFF" || &data[8..12] != b"WAVE" {
            return Err("not a WAV file (RIFF/WAVE header missing)".to_string());
        }
        let u16_at = |b: &[u8], i: usize| b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
        let u32_at =
            |b: &[u8], i: usize| b.get(i..i + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
        let mut pos = 12usize;
        let mut fmt: Option<&[u8]> = None;
        let mut pcm: Option<&'a [u8]> = None;
        while pos + 8 <= data.len() {
            let id = &data[pos..pos + 4];
            let size = u32_at(data, pos + 4).unwrap_or(0) as usize;
            let start = pos + 8;
            // Streaming writers leave the data size at 0 or 0xFFFFFFFF: take what is there.
            let end = start.saturating_add(size).min(data.len());
            match id {
                b"fmt " => fmt = Some(&data[start..end]),
                b"data" => pcm = Some(&data[start..end]),
                _ => {}
            }
            pos = start.saturating_add(size).saturating_add(size & 1);
        }
        let fmt = fmt.ok_or("the WAV file has no fmt chunk")?;
        let pcm = pcm.ok_or("the WAV file has no data chunk")?;
        let format = u16_at(fmt, 0).ok_or("the fmt chunk is too short")?;
        let channels = u16_at(fmt, 2).ok_or("the fmt chunk is too short")?;
        let rate = u32_at(fmt, 4).ok_or("the fmt chunk is too short")?;
        let bits = u16_at(fmt, 14).ok_or("the fmt chunk is too short")?;
        // WAVE_FORMAT_EXTENSIBLE names the real format in its sub-format GUID.
        let format = if format == 0xFFFE {
            u16_at(fmt, 24).ok_or("the extensible fmt chunk is too short")?
        } else {
            format
        };
        if format != 1 {
            return Err(format!("WAV format {format} is not supported; use PCM (8 or 16 bit)"));
        }
        if !(CHANNEL_RANGE.0..=CHANNEL_RANGE.1).contains(&channels) {
            return Err(format!("{channels} channels are not supported"));
        }
        if !(RATE_RANGE.0..=RATE_RANGE.1).contains(&rate) {
            return Err(format!("a sample rate of {rate} Hz is not supported (4-96 kHz)"));
        }
        let sample_width = match bits {
            8 => 1,
            16 => 2,
            _ => return Err(format!("{bits}-bit samples are not supported; use 8 or 16 bit")),
        };
        Ok(Self { channels, rate, sample_width, data: pcm })
    }

    /// Bytes of one frame (one sample of every channel).
    pub fn frame_len(&self) -> usize {
        self.sample_width * usize::from(self.channels)
    }

    /// Whole frames in the data.
    pub fn frames(&self) -> usize {
        self.data.len() / self.frame_len()
    }

    /// How many samples the message has once converted to [`SAMPLE_RATE`]
    /// (the length the sender's conversion produces).
    pub fn samples_at_call_rate(&self) -> u64 {
        self.frames() as u64 * u64::from(SAMPLE_RATE) / u64::from(self.rate)
    }
}

/// The WAV bytes of a profile's `audio` (base64; whitespace and line breaks
/// between the characters are allowed, as pasted).
pub fn decode_base64(audio: &str) -> Result<Vec<u8>, String> {
    let cleaned: String = audio.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .map_err(|e| format!("the audio is not valid base64: {e}"))
}

/// Checks that `wav` is something to play: at least one sample and at most
/// [`MAX_AUDIO_SECONDS`] at the call's rate.
pub fn check_length(wav: &Wav<'_>) -> Result<Duration, String> {
    let samples = wav.samples_at_call_rate();
    if samples == 0 {
        return Err("the WAV file holds no samples".to_string());
    }
    if samples > u64::from(MAX_AUDIO_SECONDS * SAMPLE_RATE) {
        return Err(format!("the audio is longer than {MAX_AUDIO_SECONDS} s"));
    }
    Ok(Duration::from_millis(samples * 1000 / u64::from(SAMPLE_RATE)))
}

/// Checks a profile's `audio` (base64 of a WAV file) as the call will play
/// it, and returns its duration.
pub fn check(audio: &str) -> Result<Duration, String> {
    let bytes = decode_base64(audio)?;
    let wav = Wav::parse(&bytes)?;
    check_length(&wav)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCM WAV file.
    fn wav_file(channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(44 + data.len());
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        let block = u32::from(channels) * u32::from(bits / 8);
        out.extend_from_slice(&(rate * block).to_le_bytes());
        out.extend_from_slice(&(block as u16).to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// `samples` frames of 16-bit mono silence at `rate`.
    fn mono16(rate: u32, samples: usize) -> Vec<u8> {
        wav_file(1, rate, 16, &vec![0u8; samples * 2])
    }

    #[test]
    fn length_edges_at_the_call_rate() {
        let max = (MAX_AUDIO_SECONDS * SAMPLE_RATE) as usize;
        assert_eq!(check(&b64(&mono16(8000, max))), Ok(Duration::from_secs(30)));
        assert!(check(&b64(&mono16(8000, max + 1))).expect_err("too long").contains("longer than 30 s"));
        assert_eq!(check(&b64(&mono16(8000, 1))), Ok(Duration::from_millis(0)));
        assert!(check(&b64(&mono16(8000, 0))).expect_err("empty").contains("no samples"));
        // At 16 kHz a single frame is half a sample at 8 kHz: nothing to play.
        assert!(check(&b64(&mono16(16_000, 1))).is_err());
        assert_eq!(check(&b64(&mono16(16_000, 2))), Ok(Duration::from_millis(0)));
        assert_eq!(check(&b64(&mono16(16_000, 2 * max))), Ok(Duration::from_secs(30)));
        assert!(check(&b64(&mono16(16_000, 2 * max + 2))).is_err());
    }

    #[test]
    fn format_edges() {
        let ok = |channels, rate, bits| Wav::parse(&wav_file(channels, rate, bits, &[0; 64])).map(|_| ());
        assert_eq!(ok(1, 4000, 8), Ok(()));
        assert_eq!(ok(8, 96_000, 16), Ok(()));
        assert!(ok(0, 8000, 16).is_err());
        assert!(ok(9, 8000, 16).is_err());
        assert!(ok(1, 3999, 16).expect_err("rate").contains("3999 Hz"));
        assert!(ok(1, 96_001, 16).is_err());
        assert!(ok(1, 8000, 24).expect_err("bits").contains("24-bit"));
        let mut float = wav_file(1, 8000, 16, &[0; 4]);
        float[20] = 3; // WAVE_FORMAT_IEEE_FLOAT
        assert!(Wav::parse(&float).expect_err("float").contains("format 3"));
    }

    #[test]
    fn not_wav_or_not_base64() {
        assert!(check("!!").expect_err("base64").contains("not valid base64"));
        assert!(check(&b64(b"hello")).expect_err("riff").contains("RIFF/WAVE"));
        // Pasted with line breaks: accepted.
        let wav = b64(&mono16(8000, 800));
        let wrapped: String =
            wav.as_bytes().chunks(60).map(|c| format!("{}\n", String::from_utf8_lossy(c))).collect();
        assert_eq!(check(&wrapped), Ok(Duration::from_millis(100)));
        let mut no_data = mono16(8000, 10);
        no_data[36..40].copy_from_slice(b"junk");
        assert!(check(&b64(&no_data)).expect_err("no data").contains("no data chunk"));
    }

    #[test]
    fn streaming_writers_data_size_is_tolerated() {
        let mut wav = mono16(8000, 8000);
        wav[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Wav::parse(&wav).map(|w| w.frames()), Ok(8000));
    }
}
