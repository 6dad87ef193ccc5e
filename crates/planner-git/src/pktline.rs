//! Git pkt-lines: encoding the protocol v2 `ls-refs` request, and parsing `ls-refs` answers
//! and v0/v1 ref advertisements of git smart-HTTP. Pure functions over bytes; no I/O.
//!
//! Framing: four hex digits give the line's length including themselves; `0000` is a flush,
//! `0001` a delimiter, `0002` a response end. Data lines usually end in `\n`, which is
//! stripped when a line is read as text.

/// Why a pkt-line answer could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PktError {
    #[error("truncated pkt-line at byte {0}")]
    Truncated(usize),
    #[error("bad pkt-line length {0:?} at byte {1}")]
    BadLength(String, usize),
    /// An `ERR <message>` line.
    #[error("server error: {0}")]
    ServerError(String),
    #[error("not a git smart-HTTP response: {0}")]
    NotSmart(String),
    #[error("malformed ref line {0:?}")]
    BadRef(String),
}

/// One pkt-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkt<'a> {
    /// `0000`
    Flush,
    /// `0001`
    Delim,
    /// `0002`
    ResponseEnd,
    /// The payload of a data line (its `\n`, if any, included).
    Data(&'a [u8]),
}

/// Largest payload of one data pkt-line (git's `LARGE_PACKET_DATA_MAX`).
pub const MAX_PAYLOAD: usize = 65516;

/// Reads pkt-lines one at a time, so an `ERR` line is seen before a later framing error.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn read(&mut self) -> Result<Pkt<'a>, PktError> {
        let start = self.pos;
        let head = self
            .buf
            .get(start..start + 4)
            .ok_or(PktError::Truncated(start))?;
        let bad = || PktError::BadLength(String::from_utf8_lossy(head).into_owned(), start);
        let len = head.iter().try_fold(0, |len, &b| {
            Some(len * 16 + char::from(b).to_digit(16)? as usize)
        });
        let len = len.ok_or_else(bad)?;
        let (pkt, next) = match len {
            0 => (Pkt::Flush, start + 4),
            1 => (Pkt::Delim, start + 4),
            2 => (Pkt::ResponseEnd, start + 4),
            3 => return Err(bad()),
            n => (
                Pkt::Data(
                    self.buf
                        .get(start + 4..start + n)
                        .ok_or(PktError::Truncated(start))?,
                ),
                start + n,
            ),
        };
        self.pos = next;
        Ok(pkt)
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Pkt<'a>, PktError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let pkt = self.read();
        if pkt.is_err() {
            self.pos = self.buf.len();
        }
        Some(pkt)
    }
}

/// Splits a buffer into pkt-lines.
pub fn parse_pkts(buf: &[u8]) -> Result<Vec<Pkt<'_>>, PktError> {
    Reader::new(buf).collect()
}

/// Encodes one data pkt-line (4 hex length digits + payload).
///
/// Panics if `payload` is longer than [`MAX_PAYLOAD`]; callers only encode short lines.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() <= MAX_PAYLOAD,
        "pkt-line payload of {} bytes is too long",
        payload.len()
    );
    let mut out = format!("{:04x}", payload.len() + 4).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The protocol v2 `ls-refs` request body for refs starting with `ref_prefix`
/// (e.g. `refs/heads/main`), without `peel` or `symrefs`.
pub fn ls_refs_request(ref_prefix: &str) -> Vec<u8> {
    let mut out = encode(b"command=ls-refs\n");
    out.extend(encode(
        concat!("agent=planner/", env!("CARGO_PKG_VERSION"), "\n").as_bytes(),
    ));
    out.extend_from_slice(b"0001");
    out.extend(encode(format!("ref-prefix {ref_prefix}\n").as_bytes()));
    out.extend_from_slice(b"0000");
    out
}

/// A data line as text, without its trailing `\n`; an `ERR ` line becomes `ServerError`.
fn text(data: &[u8]) -> Result<&str, PktError> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    if let Some(msg) = data.strip_prefix(b"ERR ") {
        return Err(PktError::ServerError(
            String::from_utf8_lossy(msg).into_owned(),
        ));
    }
    std::str::from_utf8(data)
        .map_err(|_| PktError::BadRef(String::from_utf8_lossy(data).into_owned()))
}

/// Parses `"<oid> <refname>[ attrs]"` into (refname, oid).
fn parse_ref(line: &str) -> Result<(String, String), PktError> {
    let bad = || PktError::BadRef(line.to_owned());
    let (oid, rest) = line.split_once(' ').ok_or_else(bad)?;
    let name = rest.split(' ').next().unwrap_or_default();
    if !is_object_id(oid) || name.is_empty() {
        return Err(bad());
    }
    Ok((name.to_owned(), oid.to_owned()))
}

/// Parses a v2 `ls-refs` answer (`"<oid> <refname>[ attr...]"` lines up to a flush) into
/// (refname, oid) pairs. Attributes (`peeled:`, `symref-target:`) and `unborn` lines are
/// skipped; anything after the flush is ignored.
pub fn parse_ls_refs(buf: &[u8]) -> Result<Vec<(String, String)>, PktError> {
    let mut refs = Vec::new();
    for pkt in Reader::new(buf) {
        match pkt? {
            Pkt::Data(data) => {
                let line = text(data)?;
                if !line.starts_with("unborn ") {
                    refs.push(parse_ref(line)?);
                }
            }
            Pkt::Flush => return Ok(refs),
            Pkt::Delim | Pkt::ResponseEnd => {
                return Err(PktError::NotSmart(
                    "unexpected delimiter in an ls-refs answer".into(),
                ));
            }
        }
    }
    Err(PktError::Truncated(buf.len()))
}

/// Parses a v0/v1 `GET info/refs?service=git-upload-pack` advertisement into (refname, oid)
/// pairs, in the server's order. Peeled tags stay as their own names (`refs/tags/v1^{}`);
/// an empty repository's `capabilities^{}` placeholder and `shallow` lines are skipped.
/// A protocol v2 capability advertisement is refused with `NotSmart`.
pub fn parse_advertisement(buf: &[u8]) -> Result<Vec<(String, String)>, PktError> {
    let mut reader = Reader::new(buf);
    let mut next = reader.next().transpose()?;
    if let Some(Pkt::Data(data)) = next
        && text(data)?.starts_with("# service=")
    {
        if reader.next().transpose()? != Some(Pkt::Flush) {
            return Err(PktError::NotSmart("no flush after the service line".into()));
        }
        next = reader.next().transpose()?;
    }
    let mut refs = Vec::new();
    let mut first = true;
    while let Some(pkt) = next {
        let Pkt::Data(data) = pkt else {
            return end_of_advertisement(pkt, refs);
        };
        advertised_line(text(data)?, &mut first, &mut refs)?;
        next = reader.next().transpose()?;
    }
    Err(PktError::Truncated(buf.len()))
}

/// Handles one data line of an advertisement; `first` is true until the first ref line.
fn advertised_line(
    line: &str,
    first: &mut bool,
    refs: &mut Vec<(String, String)>,
) -> Result<(), PktError> {
    match line {
        "version 2" if *first => Err(PktError::NotSmart("protocol v2 advertisement".into())),
        "version 1" if *first => Ok(()),
        _ if line.starts_with("shallow ") => Ok(()),
        _ => {
            // Only the first ref line carries "\0capabilities", but a stray NUL cuts any line.
            let ref_part = line.split('\0').next().unwrap_or_default();
            let (name, oid) = parse_ref(ref_part)?;
            if !(*first && name == "capabilities^{}") {
                refs.push((name, oid));
            }
            *first = false;
            Ok(())
        }
    }
}

fn end_of_advertisement(
    pkt: Pkt<'_>,
    refs: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, PktError> {
    match pkt {
        Pkt::Flush => Ok(refs),
        _ => Err(PktError::NotSmart(
            "unexpected delimiter in a ref advertisement".into(),
        )),
    }
}

/// An object id as ref advertisements carry it ([`planner_base::ids::is_object_id`]).
pub use planner_base::ids::is_object_id;

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from `git http-backend` (git 2.47.3) serving a repo with one commit on `main`
    // and an annotated tag `v1`, and an empty repo.
    const MAIN: &str = "aacaeffa8f524ec2f7eb059b25b66bec8212bab4";
    const TAG: &str = "926cf52e4e9e4da36f0b1bb4b3ef956975f188e7";
    const CAPS: &str = "multi_ack thin-pack side-band side-band-64k ofs-delta shallow deepen-since deepen-not \
                        deepen-relative no-progress include-tag multi_ack_detailed no-done";

    /// `GET info/refs?service=git-upload-pack`, no Git-Protocol header (v0).
    fn captured_v0() -> Vec<u8> {
        format!(
            "001e# service=git-upload-pack\n0000010b{MAIN} HEAD\0{CAPS} symref=HEAD:refs/heads/main \
             object-format=sha1 agent=git/2.47.3\n003d{MAIN} refs/heads/main\n003a{TAG} refs/tags/v1\n\
             003d{MAIN} refs/tags/v1^{{}}\n0000"
        )
        .into_bytes()
    }

    /// The same with `Git-Protocol: version=1`.
    fn captured_v1() -> Vec<u8> {
        let v0 = captured_v0();
        [&v0[..34], b"000eversion 1\n", &v0[34..]].concat()
    }

    /// An empty repository's v0 advertisement.
    fn captured_empty() -> Vec<u8> {
        let zero = "0".repeat(40);
        format!(
            "001e# service=git-upload-pack\n000000fa{zero} capabilities^{{}}\0{CAPS} object-format=sha1 \
             agent=git/2.47.3\n0000"
        )
        .into_bytes()
    }

    /// `GET info/refs?service=git-upload-pack` with `Git-Protocol: version=2`: no service line.
    const CAPTURED_V2: &[u8] = b"000eversion 2\n0015agent=git/2.47.3\n0013ls-refs=unborn\n\
                                 0020fetch=shallow wait-for-done\n0012server-option\n0017object-format=sha1\n0000";

    /// A v2 `fetch` wanting an unknown object: an ERR line, no newline, no flush.
    const CAPTURED_ERR: &[u8] =
        b"0049ERR upload-pack: not our ref 1111111111111111111111111111111111111111";

    fn pair(name: &str, oid: &str) -> (String, String) {
        (name.to_owned(), oid.to_owned())
    }

    #[test]
    fn parse_pkts_splits_all_kinds() {
        let pkts = parse_pkts(b"0009abcd\n0000000100020004").unwrap();
        assert_eq!(
            pkts,
            [
                Pkt::Data(b"abcd\n"),
                Pkt::Flush,
                Pkt::Delim,
                Pkt::ResponseEnd,
                Pkt::Data(b"")
            ]
        );
        assert_eq!(parse_pkts(b"").unwrap(), []);
        assert_eq!(
            parse_pkts(b"000AabcdeF").unwrap(),
            [Pkt::Data(b"abcdeF")],
            "upper-case hex is fine"
        );
    }

    #[test]
    fn parse_pkts_reports_truncation_and_bad_lengths() {
        assert_eq!(parse_pkts(b"00"), Err(PktError::Truncated(0)));
        assert_eq!(parse_pkts(b"00000030abc"), Err(PktError::Truncated(4)));
        assert_eq!(
            parse_pkts(b"zzzz"),
            Err(PktError::BadLength("zzzz".into(), 0))
        );
        assert_eq!(
            parse_pkts(b"0000+001"),
            Err(PktError::BadLength("+001".into(), 4)),
            "no sign"
        );
        assert_eq!(
            parse_pkts(b"0003"),
            Err(PktError::BadLength("0003".into(), 0))
        );
        assert_eq!(
            parse_pkts(b"<htm"),
            Err(PktError::BadLength("<htm".into(), 0))
        );
    }

    #[test]
    fn encode_round_trips() {
        assert_eq!(encode(b"done\n"), b"0009done\n");
        assert_eq!(encode(b""), b"0004");
        let long = vec![b'x'; MAX_PAYLOAD];
        assert_eq!(parse_pkts(&encode(&long)).unwrap(), [Pkt::Data(&long)]);
    }

    #[test]
    #[should_panic(expected = "too long")]
    fn encode_refuses_oversized_payloads() {
        encode(&vec![b'x'; MAX_PAYLOAD + 1]);
    }

    #[test]
    fn ls_refs_request_is_byte_exact() {
        let agent = format!("agent=planner/{}\n", env!("CARGO_PKG_VERSION"));
        let expected = format!(
            "0014command=ls-refs\n{:04x}{agent}0001001fref-prefix refs/heads/main\n0000",
            agent.len() + 4
        );
        assert_eq!(
            String::from_utf8(ls_refs_request("refs/heads/main")).unwrap(),
            expected
        );
    }

    #[test]
    fn parses_captured_ls_refs_answers() {
        let main = format!("003d{MAIN} refs/heads/main\n0000");
        assert_eq!(
            parse_ls_refs(main.as_bytes()).unwrap(),
            [pair("refs/heads/main", MAIN)]
        );
        // With `peel`, `symrefs`, `ref-prefix refs/tags/`, `ref-prefix HEAD`.
        let attrs = format!(
            "0050{MAIN} HEAD symref-target:refs/heads/main\n006a{TAG} refs/tags/v1 peeled:{MAIN}\n0000"
        );
        assert_eq!(
            parse_ls_refs(attrs.as_bytes()).unwrap(),
            [pair("HEAD", MAIN), pair("refs/tags/v1", TAG)]
        );
        // An empty repository.
        assert_eq!(parse_ls_refs(b"0000").unwrap(), []);
    }

    #[test]
    fn ls_refs_skips_unborn_and_ignores_what_follows_the_flush() {
        let buf = [
            &encode(b"unborn HEAD symref-target:refs/heads/main\n")[..],
            b"0000garbage",
        ]
        .concat();
        assert_eq!(parse_ls_refs(&buf).unwrap(), []);
    }

    #[test]
    fn ls_refs_errors() {
        let err = Err(PktError::ServerError(format!(
            "upload-pack: not our ref {}",
            "1".repeat(40)
        )));
        assert_eq!(parse_ls_refs(CAPTURED_ERR), err);
        assert_eq!(
            parse_ls_refs(&[CAPTURED_ERR, b"zz"].concat()),
            err,
            "the ERR wins over later garbage"
        );
        // http-backend answers 200 with an empty body when upload-pack dies on a bad request.
        assert_eq!(parse_ls_refs(b""), Err(PktError::Truncated(0)));
        let no_flush = format!("003d{MAIN} refs/heads/main\n");
        assert_eq!(
            parse_ls_refs(no_flush.as_bytes()),
            Err(PktError::Truncated(61))
        );
        assert_eq!(parse_ls_refs(b"003d0000"), Err(PktError::Truncated(0)));
        assert!(matches!(
            parse_ls_refs(b"zzzz"),
            Err(PktError::BadLength(_, 0))
        ));
        let bad = [&encode(b"not-an-oid refs/heads/x\n")[..], b"0000"].concat();
        assert_eq!(
            parse_ls_refs(&bad),
            Err(PktError::BadRef("not-an-oid refs/heads/x".into()))
        );
        let no_name = [&encode(format!("{MAIN}\n").as_bytes())[..], b"0000"].concat();
        assert_eq!(parse_ls_refs(&no_name), Err(PktError::BadRef(MAIN.into())));
        assert!(matches!(parse_ls_refs(b"0001"), Err(PktError::NotSmart(_))));
    }

    #[test]
    fn parses_captured_v0_and_v1_advertisements() {
        let expected = [
            pair("HEAD", MAIN),
            pair("refs/heads/main", MAIN),
            pair("refs/tags/v1", TAG),
            pair("refs/tags/v1^{}", MAIN),
        ];
        assert_eq!(parse_advertisement(&captured_v0()).unwrap(), expected);
        assert_eq!(parse_advertisement(&captured_v1()).unwrap(), expected);
        // Without the service preamble (as over git:// or ssh).
        assert_eq!(parse_advertisement(&captured_v0()[34..]).unwrap(), expected);
    }

    #[test]
    fn empty_repo_advertises_nothing() {
        assert_eq!(parse_advertisement(&captured_empty()).unwrap(), []);
    }

    #[test]
    fn v2_advertisement_is_refused() {
        let err = Err(PktError::NotSmart("protocol v2 advertisement".into()));
        assert_eq!(parse_advertisement(CAPTURED_V2), err);
        let with_preamble = [&b"001e# service=git-upload-pack\n0000"[..], CAPTURED_V2].concat();
        assert_eq!(parse_advertisement(&with_preamble), err);
    }

    #[test]
    fn advertisement_errors() {
        let err = [
            &b"001e# service=git-upload-pack\n0000"[..],
            &encode(b"ERR access denied\n"),
        ]
        .concat();
        assert_eq!(
            parse_advertisement(&err),
            Err(PktError::ServerError("access denied".into()))
        );
        let v0 = captured_v0();
        assert_eq!(
            parse_advertisement(&v0[..v0.len() - 4]),
            Err(PktError::Truncated(v0.len() - 4))
        );
        assert_eq!(
            parse_advertisement(&v0[..v0.len() - 6]),
            Err(PktError::Truncated(v0.len() - 65))
        );
        assert_eq!(parse_advertisement(b""), Err(PktError::Truncated(0)));
        let no_flush = [&b"001e# service=git-upload-pack\n"[..], &v0[34..]].concat();
        assert!(matches!(
            parse_advertisement(&no_flush),
            Err(PktError::NotSmart(_))
        ));
        assert!(matches!(
            parse_advertisement(b"<!DOCTYPE html>"),
            Err(PktError::BadLength(_, 0))
        ));
        let bad = [&encode(b"hello world\n")[..], b"0000"].concat();
        assert_eq!(
            parse_advertisement(&bad),
            Err(PktError::BadRef("hello world".into()))
        );
    }

    #[test]
    fn advertisement_skips_shallow_lines() {
        let buf = format!("003d{MAIN} refs/heads/main\n0035shallow {TAG}\n0000");
        assert_eq!(
            parse_advertisement(buf.as_bytes()).unwrap(),
            [pair("refs/heads/main", MAIN)]
        );
    }

    #[test]
    fn object_ids() {
        assert!(is_object_id(MAIN));
        assert!(is_object_id(&"0".repeat(40)));
        assert!(is_object_id(&"a".repeat(64)));
        assert!(
            !is_object_id(&"A".repeat(40)),
            "upper case is not canonical"
        );
        assert!(!is_object_id(&"a".repeat(39)));
        assert!(!is_object_id(&"a".repeat(41)));
        assert!(!is_object_id(&"g".repeat(40)));
        assert!(!is_object_id(""));
    }
}
