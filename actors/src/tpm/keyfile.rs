//! The pure part of TPM keys: persistent handles, the TCTI a `tpmDevice` setting names, and the
//! `TSS2 PRIVATE KEY` PEM format (what tpm2-openssl reads) built from Kanto's key blobs or
//! recognised in a key file. No I/O, no OpenSSL.

/// The armour of a `TSS2 PRIVATE KEY` PEM file (tpm2-openssl, tpm2-tss-engine, tpm2_encodeobject).
pub const TSS2_ARMOUR: &str = "-----BEGIN TSS2 PRIVATE KEY-----";

/// The lowest and highest TPM 2.0 persistent object handle (TPM 2.0 part 2, 7.5).
pub const PERSISTENT_HANDLES: (u32, u32) = (0x8100_0000, 0x81ff_ffff);

/// OID 2.23.133.10.1.3 (TCG "loadable key"), DER-encoded contents.
const LOADABLE_KEY_OID: [u8; 6] = [0x67, 0x81, 0x05, 0x0a, 0x01, 0x03];

/// Whether a key file's text is a `TSS2 PRIVATE KEY` PEM (leading blank space allowed).
pub fn is_tss2_pem(text: &[u8]) -> bool {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    text[start..].starts_with(TSS2_ARMOUR.as_bytes())
}

/// A persistent handle from `"0x81000001"` (hex) or `"2164260865"` (decimal); it must lie in
/// the persistent range. The error says what is wrong, for the caller to put after the key name.
pub fn parse_persistent_handle(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => t.parse::<u32>(),
    };
    let handle = parsed.map_err(|_| {
        format!("{text:?} is not a TPM handle; write it as hex, e.g. \"0x81000001\"")
    })?;
    check_persistent(u64::from(handle))
}

/// A persistent handle given as a JSON number (Kanto writes `tpmHandle` as a decimal number).
pub fn check_persistent(handle: u64) -> Result<u32, String> {
    let (low, high) = PERSISTENT_HANDLES;
    match u32::try_from(handle) {
        Ok(h) if (low..=high).contains(&h) => Ok(h),
        _ => Err(format!(
            "0x{handle:x} is not a persistent handle (0x{low:08x}-0x{high:08x}); list them with: tpm2_getcap handles-persistent"
        )),
    }
}

/// The TCTI (TPM Command Transmission Interface) configuration for a `tpmDevice` value: a device
/// path (`/dev/tpmrm0`) becomes `device:/dev/tpmrm0`; a TCTI string (`swtpm:host=…,port=…`,
/// `tabrmd:…`, `device:…`, `mssim:…`) is used as it is; empty means `/dev/tpmrm0`.
pub fn tcti_for_device(device: &str) -> Result<String, String> {
    let d = device.trim();
    if d.is_empty() {
        return Ok("device:/dev/tpmrm0".into());
    }
    if d.starts_with('/') {
        return Ok(format!("device:{d}"));
    }
    match d.split_once(':') {
        Some((name, _)) if ["device", "swtpm", "mssim", "tabrmd", "cmd"].contains(&name) => {
            Ok(d.to_string())
        }
        _ => Err(format!(
            "{device:?} is neither a device path (\"/dev/tpmrm0\") nor a TCTI (\"device:/dev/tpmrm0\", \"swtpm:host=127.0.0.1,port=2321\", \"tabrmd:\")"
        )),
    }
}

/// Whether a Kanto key blob file looks like what `tpm2_create -u/-r` writes: a TPM2B (a
/// big-endian 16-bit size followed by exactly that many bytes).
pub fn is_tpm2b(blob: &[u8]) -> bool {
    blob.len() > 2 && usize::from(u16::from_be_bytes([blob[0], blob[1]])) == blob.len() - 2
}

/// The `TSS2 PRIVATE KEY` PEM of a key created with `tpm2_create -C parent -u public -r private`
/// (Kanto's `tpmHandle`, `tpmKeyPub`, `tpmKey`): no authorization value (`emptyAuth`).
pub fn tss2_pem(parent: u32, public: &[u8], private: &[u8]) -> String {
    let mut parent_int = parent.to_be_bytes().to_vec();
    if parent_int[0] & 0x80 != 0 {
        parent_int.insert(0, 0);
    }
    let mut body = der(0x06, &LOADABLE_KEY_OID);
    body.extend(der(0xa0, &der(0x01, &[0xff])));
    body.extend(der(0x02, &parent_int));
    body.extend(der(0x04, public));
    body.extend(der(0x04, private));
    let encoded = base64(&der(0x30, &body));
    let mut pem = String::from(TSS2_ARMOUR);
    pem.push('\n');
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END TSS2 PRIVATE KEY-----\n");
    pem
}

/// Whether a TSS2 key's DER says `emptyAuth TRUE` (the key needs no password); `None` when the
/// structure cannot be read this far (the TPM's own decoder then reports it).
pub fn tss2_empty_auth(der_bytes: &[u8]) -> Option<bool> {
    let (tag, body, _) = read_tlv(der_bytes)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _, rest) = read_tlv(body)?;
    if tag != 0x06 {
        return None;
    }
    match read_tlv(rest)? {
        (0xa0, inner, _) => match read_tlv(inner)? {
            (0x01, [v], _) => Some(*v != 0),
            _ => None,
        },
        // emptyAuth is OPTIONAL and DEFAULT FALSE.
        _ => Some(false),
    }
}

/// The DER inside a PEM text (the first armoured block), or `None`.
pub fn pem_body(text: &str) -> Option<Vec<u8>> {
    let mut inside = false;
    let mut b64 = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN ") {
            inside = true;
        } else if line.starts_with("-----END ") {
            return unbase64(&b64);
        } else if inside {
            b64.push_str(line);
        }
    }
    None
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n <= 0xff {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn read_tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = usize::from(*data.get(1)?);
    let (len, header) = match first {
        n if n < 0x80 => (n, 2),
        0x81 => (usize::from(*data.get(2)?), 3),
        0x82 => (
            usize::from(*data.get(2)?) << 8 | usize::from(*data.get(3)?),
            4,
        ),
        _ => return None,
    };
    let body = data.get(header..header + len)?;
    Some((tag, body, &data[header + len..]))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_handles_by_table() {
        let rows: &[(&str, Result<u32, &str>)] = &[
            ("0x81000001", Ok(0x8100_0001)),
            ("0X81FFFFFF", Ok(0x81ff_ffff)),
            ("2164260864", Ok(0x8100_0000)),
            (" 0x81000000 ", Ok(0x8100_0000)),
            ("0x80000001", Err("not a persistent handle")),
            ("0x82000000", Err("not a persistent handle")),
            ("0x1", Err("not a persistent handle")),
            ("0x", Err("not a TPM handle")),
            ("handle", Err("not a TPM handle")),
            ("0x181000000", Err("not a TPM handle")),
        ];
        for (text, want) in rows {
            match (parse_persistent_handle(text), want) {
                (Ok(h), Ok(w)) => assert_eq!(h, *w, "{text}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{text}: {e}"),
                (got, _) => panic!("{text}: {got:?}, want {want:?}"),
            }
        }
        assert_eq!(check_persistent(2_164_260_865), Ok(0x8100_0001));
        assert!(check_persistent(u64::from(u32::MAX) + 0x8100_0001).is_err());
    }

    #[test]
    fn tcti_for_device_by_table() {
        let rows: &[(&str, Result<&str, ()>)] = &[
            ("", Ok("device:/dev/tpmrm0")),
            ("/dev/tpmrm0", Ok("device:/dev/tpmrm0")),
            ("/dev/tpm0", Ok("device:/dev/tpm0")),
            ("device:/dev/tpmrm0", Ok("device:/dev/tpmrm0")),
            (
                "swtpm:host=127.0.0.1,port=2321",
                Ok("swtpm:host=127.0.0.1,port=2321"),
            ),
            ("tabrmd:bus_type=session", Ok("tabrmd:bus_type=session")),
            ("tpmrm0", Err(())),
            ("http://x", Err(())),
        ];
        for (device, want) in rows {
            let got = tcti_for_device(device);
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{device}"),
                Err(()) => assert!(got.is_err(), "{device}: {got:?}"),
            }
        }
    }

    #[test]
    fn tpm2b_blobs_by_table() {
        let rows: &[(&[u8], bool)] = &[
            (&[0, 2, 9, 9], true),
            (&[0, 3, 9, 9], false),
            (&[0, 0], false),
            (&[], false),
            (b"-----BEGIN", false),
        ];
        for (blob, want) in rows {
            assert_eq!(is_tpm2b(blob), *want, "{blob:?}");
        }
    }

    #[test]
    fn armour_is_recognised_by_table() {
        let rows: &[(&[u8], bool)] = &[
            (b"-----BEGIN TSS2 PRIVATE KEY-----\nAAAA\n", true),
            (b"\n  -----BEGIN TSS2 PRIVATE KEY-----\n", true),
            (b"-----BEGIN PRIVATE KEY-----\n", false),
            (b"-----BEGIN EC PRIVATE KEY-----\n", false),
            (b"", false),
        ];
        for (text, want) in rows {
            assert_eq!(
                is_tss2_pem(text),
                *want,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn a_kanto_key_becomes_a_loadable_tss2_key_without_a_password() {
        let public = [0u8, 3, 1, 2, 3];
        let private = vec![7u8; 200];
        let pem = tss2_pem(0x8100_0000, &public, &private);
        assert!(pem.starts_with(TSS2_ARMOUR), "{pem}");
        assert!(pem.lines().all(|l| l.len() <= 64));
        let body = pem_body(&pem).unwrap();
        assert_eq!(tss2_empty_auth(&body), Some(true));
        // SEQUENCE { OID, [0] { TRUE }, INTEGER 0x0081000000, OCTET STRING pub, OCTET STRING priv }
        let (tag, seq, rest) = read_tlv(&body).unwrap();
        assert_eq!((tag, rest.len()), (0x30, 0));
        let (_, oid, seq) = read_tlv(seq).unwrap();
        assert_eq!(oid, LOADABLE_KEY_OID);
        let (_, _, seq) = read_tlv(seq).unwrap();
        let (tag, parent, seq) = read_tlv(seq).unwrap();
        assert_eq!((tag, parent), (0x02, &[0, 0x81, 0, 0, 0][..]));
        let (tag, p, seq) = read_tlv(seq).unwrap();
        assert_eq!((tag, p), (0x04, &public[..]));
        let (tag, p, seq) = read_tlv(seq).unwrap();
        assert_eq!((tag, p, seq.len()), (0x04, &private[..], 0));
    }

    #[test]
    fn empty_auth_by_table() {
        let oid = der(0x06, &LOADABLE_KEY_OID);
        let with = |extra: Vec<u8>| {
            let mut b = oid.clone();
            b.extend(extra);
            der(0x30, &b)
        };
        let rows: Vec<(Vec<u8>, Option<bool>)> = vec![
            (with(der(0xa0, &der(0x01, &[0xff]))), Some(true)),
            (with(der(0xa0, &der(0x01, &[0x00]))), Some(false)),
            (with(der(0x02, &[0x40, 0, 0, 1])), Some(false)),
            (der(0x04, &[1, 2]), None),
            (vec![], None),
        ];
        for (bytes, want) in rows {
            assert_eq!(tss2_empty_auth(&bytes), want, "{bytes:02x?}");
        }
    }

    #[test]
    fn base64_round_trips() {
        for data in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            &[0xff, 0, 0x80, 1, 2],
        ] {
            assert_eq!(unbase64(&base64(data)).as_deref(), Some(data), "{data:?}");
        }
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
    }
}
