//! Audio for phone alerts: the built-in tone sequence, WAV decoding to 8 kHz
//! mono, G.711 (µ-law and A-law) encoding and RTP packets.
//!
//! These are a few dozen lines each, so we write them rather than pull in
//! codec crates: G.711 is the ITU reference algorithm, RTP a 12-byte header.

pub use portcullis_core::audio::{MAX_AUDIO_SECONDS, SAMPLE_RATE};
use portcullis_core::audio::{Wav, check_length, decode_base64};

use crate::NotifyError;

/// Samples in one 20 ms RTP packet.
pub const SAMPLES_PER_PACKET: usize = 160;

/// G.711 variant negotiated for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// µ-law, RTP payload type 0 (North America, Japan).
    Pcmu,
    /// A-law, RTP payload type 8 (Europe, elsewhere).
    Pcma,
}

impl Codec {
    /// The static RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The codec of a static payload type, if it is G.711.
    pub fn from_payload_type(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Encodes 16-bit linear samples.
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        match self {
            Codec::Pcmu => samples.iter().map(|s| linear_to_ulaw(*s)).collect(),
            Codec::Pcma => samples.iter().map(|s| linear_to_alaw(*s)).collect(),
        }
    }
}

/// The built-in alert: three rounds of a two-tone chime (880 Hz, 660 Hz), about 3 s.
pub fn tone_sequence() -> Vec<i16> {
    let mut out = Vec::with_capacity(3 * SAMPLE_RATE as usize);
    for _ in 0..3 {
        for (freq, ms) in [(880.0, 400), (0.0, 100), (660.0, 400), (0.0, 100)] {
            let n = SAMPLE_RATE as usize * ms / 1000;
            for i in 0..n {
                let t = i as f64 / f64::from(SAMPLE_RATE);
                // A short fade in and out avoids clicks at tone edges.
                let edge = (i.min(n - 1 - i) as f64 / 80.0).min(1.0);
                let v = (2.0 * std::f64::consts::PI * freq * t).sin() * 12000.0 * edge;
                out.push(v as i16);
            }
        }
    }
    out
}

/// The samples to play for a profile's `audio`: the tone sequence, or the
/// decoded WAV, as 8 kHz mono. The profile was checked when it was set
/// (`portcullis_core::audio::check`); the same rules are applied again here
/// for a profile stored by an older version.
pub fn audio_samples(audio: Option<&str>) -> Result<Vec<i16>, NotifyError> {
    let Some(b64) = audio else { return Ok(tone_sequence()) };
    let invalid = |e: String| NotifyError::InvalidProfile(format!("audio: {e}"));
    let bytes = decode_base64(b64).map_err(invalid)?;
    check_length(&Wav::parse(&bytes).map_err(invalid)?).map_err(invalid)?;
    decode_wav(&bytes).map_err(invalid)
}

/// Decodes a PCM WAV file (8-bit unsigned or 16-bit signed, any channel
/// count and rate; the header rules are the core's [`Wav::parse`]) into
/// 8 kHz mono 16-bit samples.
pub fn decode_wav(data: &[u8]) -> Result<Vec<i16>, String> {
    let wav = Wav::parse(data)?;
    let (width, channels) = (wav.sample_width, i32::from(wav.channels));
    let mono: Vec<i32> = wav
        .data
        .chunks_exact(wav.frame_len())
        .map(|f| {
            let sum: i32 = f
                .chunks_exact(width)
                .map(|s| {
                    if width == 1 {
                        (i32::from(s[0]) - 128) << 8
                    } else {
                        i32::from(i16::from_le_bytes([s[0], s[1]]))
                    }
                })
                .sum();
            sum / channels
        })
        .collect();
    Ok(resample(&mono, wav.rate))
}

/// Converts to 8 kHz: averaging over each output sample's span when
/// downsampling (a box filter, enough against gross aliasing for speech),
/// linear interpolation when upsampling.
fn resample(input: &[i32], rate: u32) -> Vec<i16> {
    let clamp = |v: i64| v.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
    if rate == SAMPLE_RATE {
        return input.iter().map(|v| clamp(i64::from(*v))).collect();
    }
    let out_len = (input.len() as u64 * u64::from(SAMPLE_RATE) / u64::from(rate)) as usize;
    let mut out = Vec::with_capacity(out_len);
    for i in 0..out_len {
        if rate > SAMPLE_RATE {
            let from = (i as u64 * u64::from(rate) / u64::from(SAMPLE_RATE)) as usize;
            let to = (((i + 1) as u64 * u64::from(rate) / u64::from(SAMPLE_RATE)) as usize)
                .clamp(from + 1, input.len());
            let span = &input[from.min(input.len() - 1)..to];
            let sum: i64 = span.iter().map(|v| i64::from(*v)).sum();
            out.push(clamp(sum / span.len().max(1) as i64));
        } else {
            let pos = i as f64 * f64::from(rate) / f64::from(SAMPLE_RATE);
            let idx = pos as usize;
            let frac = pos - idx as f64;
            let a = f64::from(input[idx.min(input.len() - 1)]);
            let b = f64::from(input[(idx + 1).min(input.len() - 1)]);
            out.push(clamp((a + (b - a) * frac) as i64));
        }
    }
    out
}

/// G.711 µ-law encoding of one sample (ITU-T G.711, as in the reference code).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// G.711 µ-law decoding of one byte.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// G.711 A-law encoding of one sample (ITU-T G.711, as in the reference code).
pub fn linear_to_alaw(sample: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut pcm = i32::from(sample) >> 3;
    let mask = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let Some(seg) = SEG_END.iter().position(|end| pcm <= *end) else { return (0x7F ^ mask) as u8 };
    let shift = if seg < 2 { 1 } else { seg };
    let aval = ((seg as i32) << 4) | ((pcm >> shift) & 0x0F);
    (aval ^ mask) as u8
}

/// G.711 A-law decoding of one byte.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = i32::from(byte ^ 0x55);
    let seg = (a & 0x70) >> 4;
    let mut t = (a & 0x0F) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// One RTP packet (RFC 3550): version 2, no padding, extension or CSRC.
pub fn rtp_packet(
    payload_type: u8,
    marker: bool,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push(payload_type & 0x7F | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn wav(rate: u32, channels: u16, bits: u16, frames: &[i16]) -> Vec<u8> {
        let mut data = Vec::new();
        for s in frames {
            for _ in 0..channels {
                if bits == 8 {
                    data.push(((i32::from(*s) >> 8) + 128) as u8);
                } else {
                    data.extend_from_slice(&s.to_le_bytes());
                }
            }
        }
        let block = channels * bits / 8;
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        out.extend_from_slice(&block.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"LIST\x04\x00\x00\x00INFO");
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        out
    }

    #[test]
    fn g711_round_trips_within_quantisation() {
        for s in [-32768i16, -20000, -1000, -1, 0, 1, 100, 1000, 8000, 20000, 32767] {
            let u = ulaw_to_linear(linear_to_ulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            let tol = (i32::from(s).abs() / 16).max(16);
            assert!((i32::from(u) - i32::from(s)).abs() <= tol.max(140), "µ-law {s} -> {u}");
            assert!((i32::from(a) - i32::from(s)).abs() <= tol.max(140), "A-law {s} -> {a}");
        }
        // Reference values: silence encodes to 0xFF (µ-law) and 0xD5 (A-law).
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
    }

    #[test]
    fn tone_sequence_is_about_three_seconds_and_audible() {
        let t = tone_sequence();
        assert_eq!(t.len(), 3 * 8000);
        assert!(t.iter().any(|s| *s > 10000));
    }

    #[test]
    fn wav_decoding_mixes_and_resamples() {
        let frames: Vec<i16> = (0..16000).map(|i| ((i % 100) * 100) as i16).collect();
        let mono16 = decode_wav(&wav(16000, 1, 16, &frames)).expect("16 kHz");
        assert_eq!(mono16.len(), 8000);
        let stereo8 = decode_wav(&wav(8000, 2, 8, &frames)).expect("8-bit stereo");
        assert_eq!(stereo8.len(), 16000);
        assert!((i32::from(stereo8[50]) - 5000).abs() < 300, "{}", stereo8[50]);
        let up = decode_wav(&wav(4000, 1, 16, &[0, 1000, 2000])).expect("4 kHz");
        assert_eq!(&up[..4], &[0, 500, 1000, 1500]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(wav(44100, 2, 16, &frames));
        assert_eq!(audio_samples(Some(&b64)).map(|s| s.len()), Ok(2902), "362 ms at 8 kHz");
    }

    #[test]
    fn bad_audio_is_refused_with_reason() {
        assert!(decode_wav(b"RIFF\0\0\0\0WAVE").expect_err("no fmt").contains("fmt"));
        assert!(decode_wav(b"not a wav").is_err());
        assert_eq!(audio_samples(Some("!!")).map_err(|e| e.code().as_str()), Err("invalid_profile"));
        let long = base64::engine::general_purpose::STANDARD.encode(wav(8000, 1, 16, &vec![0; 8000 * 31]));
        assert!(audio_samples(Some(&long)).is_err());
    }

    #[test]
    fn rtp_header() {
        let p = rtp_packet(8, true, 0x0102, 0x03040506, 0x0708090a, &[1, 2]);
        assert_eq!(p, vec![0x80, 0x88, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2]);
    }
}
