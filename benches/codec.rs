//! Codec throughput per core (issue 3): `codec::encode`, `codec::decode` (full
//! verification) and `codec::decode_by` of one block's worth of content
//! (`codec::MAX_CONTENT` bytes), single-threaded, for incompressible and for text
//! content; then the primitives a convergent block is made of (SHA-256, AES-256-GCM,
//! zlib), so a slow codec can be traced to its parts.
//!
//! Plain `std::time::Instant`, no framework: each measurement warms up and sizes a batch
//! to about `--batch-ms`; then `--reps` rounds time one batch of every measurement in
//! turn (interleaved, so a busy spell on a shared machine hits all alike), and each
//! reports its median rate, computed from the thread's CPU time like `openssl speed`
//! (the wall-clock median and the share of wall time spent on a CPU are given beside
//! it). Output is one
//! JSON object per line (`{"bench":"codec",...}`), which `tools/bench_codec.py` parses;
//! progress and notes go to stderr.
//!
//!     cargo bench --bench codec                  # full: 11 reps of ~200 ms each
//!     cargo bench --bench codec -- --smoke       # 3 reps of ~20 ms: checks it runs
//!     cargo bench --bench codec -- --only encode # measurements whose name contains it
//!     cargo bench --bench codec -- --dump DIR    # write the two contents to DIR, exit

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use libernet::codec::{self, MAX_CONTENT, Mode};
use sha2::{Digest, Sha256};

/// Seed of the deterministic content: the same bytes on every run and machine.
const SEED: u64 = 0x6c69_6265_726e_6574; // "libernet"

/// zlib level the codec uses for convergent blocks (codec.rs `ZLIB_LEVEL`), for the
/// primitive measurement.
const ZLIB_LEVEL: u32 = 6;

/// How one run measures.
struct Options {
    /// Timed batches per measurement; the median is reported.
    reps: usize,
    /// Target wall time of one batch.
    batch: Duration,
    /// Untimed running before the batches (also sizes the batch).
    warmup: Duration,
    /// Run only measurements whose name contains this.
    only: Option<String>,
    /// Write the two contents here (`random.bin`, `text.txt`) and exit.
    dump: Option<std::path::PathBuf>,
}

impl Options {
    fn from_args() -> Options {
        let mut options = Options {
            reps: 11,
            batch: Duration::from_millis(200),
            warmup: Duration::from_millis(300),
            only: None,
            dump: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .unwrap_or_else(|| panic!("{name} needs a value"))
            };
            match arg.as_str() {
                "--smoke" => {
                    options.reps = 3;
                    options.batch = Duration::from_millis(20);
                    options.warmup = Duration::from_millis(20);
                }
                "--reps" => options.reps = value("--reps").parse().expect("--reps N"),
                "--batch-ms" => {
                    options.batch =
                        Duration::from_millis(value("--batch-ms").parse().expect("--batch-ms N"))
                }
                "--only" => options.only = Some(value("--only")),
                "--dump" => options.dump = Some(value("--dump").into()),
                // `cargo bench` passes `--bench` to every bench binary.
                "--bench" => {}
                other => panic!(
                    "unknown argument {other:?} (--smoke, --reps N, --batch-ms N, --only NAME, \
                     --dump DIR)"
                ),
            }
        }
        assert!(options.reps > 0, "--reps must be at least 1");
        options
    }
}

/// Deterministic incompressible bytes (xorshift64, as in the codec's unit tests).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| (rng.next() >> 24) as u8).collect()
}

/// Deterministic English-like prose: words drawn from a fixed vocabulary of common
/// English words with Zipf-like weights (the k-th word about 1/k as likely), sentences of
/// 4 to 22 words, commas, capitals, paragraphs of 3 to 8 sentences. zlib level 6 shrinks
/// it to about a third, near what it does with real English prose.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &str = "the of and to a in is it you that he was for on are with as I his \
        they be at one have this from or had by hot word but what some we can out other were \
        all there when up use your how said an each she which do their time if will way about \
        many then them write would like so these her long make thing see him two has look \
        more day could go come did number sound no most people my over know water than call \
        first who may down side been now find any new work part take get place made live \
        where after back little only round man year came show every good me give our under \
        name very through just form sentence great think say help low line differ turn cause \
        much mean before move right boy old too same tell does set three want air well also \
        play small end put home read hand port large spell add even land here must big high \
        such follow act why ask men change went light kind off need house picture try us \
        again animal point mother world near build self earth father head stand own page \
        should country found answer school grow study still learn plant cover food sun four \
        between state keep eye never last let thought city tree cross farm hard start might \
        story saw far sea draw left late run while press close night real life few north \
        open seem together next white children begin got walk example ease paper group \
        always music those both mark often letter until mile river car feet care second \
        book carry took science eat room friend began idea fish mountain stop once base hear \
        horse cut sure watch color face wood main enough plain girl usual young ready above \
        ever red list though feel talk bird soon body dog family direct pose leave song \
        measure door product black short numeral class wind question happen complete ship \
        area half rock order fire south problem piece told knew pass since top whole king \
        space heard best hour better true during hundred five remember step early hold west \
        ground interest reach fast verb sing listen six table travel less morning ten simple \
        several vowel toward war lay against pattern slow center love person money serve \
        appear road map rain rule govern pull cold notice voice unit power town fine certain \
        fly fall lead cry dark machine note wait plan figure star box noun field rest \
        correct able pound done beauty drive stood contain front teach week final gave green \
        quick develop ocean warm free minute strong special mind behind clear tail produce \
        fact street inch multiply nothing course stay wheel full force blue object decide \
        surface deep moon island foot system busy test record boat common gold possible \
        plane stead dry wonder laugh thousand ago ran check game shape equate miss brought \
        heat snow tire bring yes distant fill east paint language among";
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    // Cumulative Zipf weights, scaled to integers.
    let mut cumulative = Vec::with_capacity(words.len());
    let mut total = 0u64;
    for k in 1..=words.len() as u64 {
        total += 1_000_000 / k;
        cumulative.push(total);
    }
    let mut rng = Rng(seed | 1);
    let mut out = String::with_capacity(len + 64);
    while out.len() < len {
        let sentences = 3 + rng.below(6);
        for _ in 0..sentences {
            let count = 4 + rng.below(19);
            for i in 0..count {
                let pick = rng.below(total);
                let word = words[cumulative.partition_point(|&c| c <= pick)];
                if i == 0 {
                    let mut chars = word.chars();
                    let first = chars.next().unwrap_or(' ').to_ascii_uppercase();
                    out.push(first);
                    out.push_str(chars.as_str());
                } else {
                    out.push_str(word);
                }
                let last = i + 1 == count;
                if last {
                    out.push_str(if rng.below(8) == 0 { "? " } else { ". " });
                } else if rng.below(9) == 0 {
                    out.push_str(", ");
                } else {
                    out.push(' ');
                }
            }
        }
        out.push('\n');
    }
    let mut bytes = out.into_bytes();
    bytes.truncate(len);
    bytes
}

/// xorshift64: tiny, deterministic, good enough for test content.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Roughly uniform in `0..n` (the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// This thread's CPU time (user + system), in nanoseconds: `clock_gettime` with
/// `CLOCK_THREAD_CPUTIME_ID`. Rates are computed from it, as `openssl speed` computes
/// its rates from CPU time (unless `-elapsed`): time the thread spent preempted by other
/// processes does not count against it. `None` if the clock is unavailable.
fn thread_cpu_ns() -> Option<u64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    // std links the C library already; declaring the one function avoids a dependency.
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    /// Linux's CLOCK_THREAD_CPUTIME_ID.
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec (64-bit time_t and long on the 64-bit
    // Linux targets this bench runs on); the call writes nothing else.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0 && cfg!(all(target_os = "linux", target_pointer_width = "64")))
        .then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// One measured operation and what its timed batches gave.
struct Case<'a> {
    op: &'static str,
    data: &'static str,
    /// Content bytes per operation (what MB/s counts).
    bytes: usize,
    /// Block bytes the content encodes to (for the compression ratio); for the zlib
    /// primitives, the compressed size; else 0.
    block_bytes: usize,
    run: Box<dyn FnMut() + 'a>,
    /// Operations per timed batch, sized during the warm-up.
    batch: u64,
    cpu_rates: Vec<f64>,
    wall_rates: Vec<f64>,
    cpu_secs: f64,
    wall_secs: f64,
}

impl<'a> Case<'a> {
    fn new<T>(
        op: &'static str,
        data: &'static str,
        bytes: usize,
        block_bytes: usize,
        mut f: impl FnMut() -> T + 'a,
    ) -> Case<'a> {
        Case {
            op,
            data,
            bytes,
            block_bytes,
            run: Box::new(move || {
                black_box(f());
            }),
            batch: 1,
            cpu_rates: Vec::new(),
            wall_rates: Vec::new(),
            cpu_secs: 0.0,
            wall_secs: 0.0,
        }
    }

    fn name(&self) -> String {
        format!("{} {}", self.op, self.data)
    }

    /// Runs untimed for `warmup` (at least twice) and sizes the batch to `batch`.
    fn warm_up(&mut self, warmup: Duration, batch: Duration) {
        let started = Instant::now();
        let mut ops = 0u64;
        while ops < 2 || started.elapsed() < warmup {
            (self.run)();
            ops += 1;
        }
        let per_op = started.elapsed().as_secs_f64() / ops as f64;
        self.batch = ((batch.as_secs_f64() / per_op).round() as u64).max(1);
    }

    /// Times one batch, by this thread's CPU time and by the wall clock.
    fn time_batch(&mut self) {
        let cpu = thread_cpu_ns();
        let t = Instant::now();
        for _ in 0..self.batch {
            (self.run)();
        }
        let wall = t.elapsed().as_secs_f64();
        let bytes = self.batch as f64 * self.bytes as f64;
        self.wall_rates.push(bytes / wall / 1e6);
        self.wall_secs += wall;
        if let (Some(a), Some(b)) = (cpu, thread_cpu_ns()) {
            let secs = (b.saturating_sub(a)) as f64 / 1e9;
            self.cpu_rates.push(bytes / secs.max(1e-9) / 1e6);
            self.cpu_secs += secs;
        }
    }

    /// The JSON line and a human-readable one. Per-core rates come from CPU time; from
    /// the wall clock only when the CPU clock was unavailable.
    fn report(&self) {
        let by_cpu = !self.cpu_rates.is_empty() && self.cpu_rates.len() == self.wall_rates.len();
        let mut rates = if by_cpu {
            self.cpu_rates.clone()
        } else {
            self.wall_rates.clone()
        };
        rates.sort_by(f64::total_cmp);
        let mut wall = self.wall_rates.clone();
        wall.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let on_cpu = by_cpu.then(|| self.cpu_secs / self.wall_secs);
        let line = serde_json::json!({
            "bench": "codec",
            "op": self.op,
            "data": self.data,
            "bytes": self.bytes,
            "block_bytes": self.block_bytes,
            "reps": rates.len(),
            "batch": self.batch,
            "clock": if by_cpu { "thread_cpu" } else { "wall" },
            "median_mb_s": round2(median),
            "min_mb_s": round2(rates[0]),
            "max_mb_s": round2(rates[rates.len() - 1]),
            "median_ms_per_op": round2(self.bytes as f64 / median / 1e3),
            "wall_median_mb_s": round2(wall[wall.len() / 2]),
            "on_cpu": on_cpu.map(round2),
        });
        println!("{line}");
        eprintln!(
            "{:<31} {median:>9.1} MB/s (min {:.1}, max {:.1}; {} x {} ops; on cpu {})",
            self.name(),
            rates[0],
            rates[rates.len() - 1],
            rates.len(),
            self.batch,
            on_cpu.map_or("? (wall-clock rates)".into(), |c| format!(
                "{:.0}%",
                c * 100.0
            )),
        );
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// encode, decode and decode_by of one content; checks the round trip first.
fn codec_cases<'a>(data: &'static str, content: &'a [u8]) -> Vec<Case<'a>> {
    let encoded = codec::encode(content).expect("MAX_CONTENT bytes encode");
    let key = encoded.locator.key;
    let decoded = codec::decode(&encoded.block, Mode::Aes256, &key).expect("round trip");
    assert_eq!(
        decoded.content, content,
        "{data}: decode returns the content"
    );
    let recipe = decoded.recipe;
    let again = codec::decode_by(&encoded.block, &key, recipe).expect("decode_by");
    assert_eq!(again, content, "{data}: decode_by returns the content");
    let block: &'a [u8] = Box::leak(encoded.block.into_boxed_slice());
    let (n, b) = (content.len(), block.len());
    vec![
        Case::new("encode", data, n, b, move || {
            codec::encode(black_box(content)).unwrap()
        }),
        Case::new("decode", data, n, b, move || {
            codec::decode(black_box(block), Mode::Aes256, &key).unwrap()
        }),
        Case::new("decode_by", data, n, b, move || {
            codec::decode_by(black_box(block), &key, recipe).unwrap()
        }),
        // As the node opens file blocks: straight into a reused buffer (zlib content
        // falls back to `decode_by`, as in the node).
        Case::new("decode_by_into", data, n, b, {
            let mut out = vec![0u8; MAX_CONTENT];
            move || match codec::decode_by_into(black_box(block), &key, recipe, &mut out) {
                Ok(Some(len)) => len,
                _ => codec::decode_by(black_box(block), &key, recipe)
                    .unwrap()
                    .len(),
            }
        }),
    ]
}

/// The parts of a convergent block, each over the same content: SHA-256 (twice per
/// encode and once per full decode), AES-256-GCM the way the codec calls it, zlib.
fn primitive_cases<'a>(random: &'a [u8], text: &'a [u8]) -> Vec<Case<'a>> {
    let cipher = Aes256Gcm::new(&[7u8; 32].into());
    let nonce = Nonce::from([0u8; 12]);
    let mut buffer = random.to_vec();
    // As the codec decrypts: copy the ciphertext out, then open it in place.
    let mut sealed = random.to_vec();
    let tag = cipher
        .encrypt_inout_detached(&nonce, &[], sealed.as_mut_slice().into())
        .unwrap();
    let packed = zlib(text, ZLIB_LEVEL);
    let packed_fast = zlib(text, 1).len();
    let (r, t) = (random.len(), text.len());
    let opener = cipher.clone();
    let (into_opener, into_sealed) = (cipher.clone(), sealed.clone());
    vec![
        Case::new("sha256", "random", r, 0, move || {
            Sha256::digest(black_box(random))
        }),
        Case::new("aes256gcm_seal_in_place", "random", r, 0, move || {
            cipher
                .encrypt_inout_detached(&nonce, &[], black_box(buffer.as_mut_slice()).into())
                .unwrap()
        }),
        Case::new("aes256gcm_open_copy", "random", r, 0, move || {
            let mut plain = black_box(&sealed).to_vec();
            opener
                .decrypt_inout_detached(&nonce, &[], plain.as_mut_slice().into(), &tag)
                .unwrap();
            plain
        }),
        // As the node opens file blocks: from the ciphertext into a reused buffer.
        Case::new("aes256gcm_open_into", "random", r, 0, {
            let mut out = vec![0u8; r];
            move || {
                let buf = InOutBuf::new(black_box(&into_sealed), &mut out).unwrap();
                into_opener
                    .decrypt_inout_detached(&nonce, &[], buf, &tag)
                    .unwrap();
            }
        }),
        Case::new("memcpy", "random", r, 0, move || black_box(random).to_vec()),
        Case::new("zlib6_compress", "text", t, packed.len(), move || {
            zlib(black_box(text), ZLIB_LEVEL)
        }),
        // The codec's level 6 against zlib's fastest level, on the same text.
        Case::new("zlib1_compress", "text", t, packed_fast, move || {
            zlib(black_box(text), 1)
        }),
        Case::new("zlib_inflate", "text", t, 0, move || {
            let mut out = Vec::with_capacity(t);
            flate2::read::ZlibDecoder::new(black_box(packed.as_slice()))
                .read_to_end(&mut out)
                .unwrap();
            out
        }),
    ]
}

/// AWS-LC's AES-256-GCM (aws-lc-rs) opening the same 1 MiB in place, to compare with
/// the aes-gcm crate's (`--features bench-aws-lc`; not built otherwise).
#[cfg(feature = "bench-aws-lc")]
fn aws_lc_cases(random: &[u8]) -> Vec<Case<'_>> {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce as AwsNonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let mut sealed = random.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            AwsNonce::assume_unique_for_key([0; 12]),
            Aad::empty(),
            &mut sealed,
        )
        .unwrap();
    sealed.extend_from_slice(tag.as_ref());
    let r = random.len();
    let mut seal_buf = random.to_vec();
    let sealer = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let mut work = sealed.clone();
    vec![
        Case::new("aws_lc_gcm_seal_in_place", "random", r, 0, move || {
            sealer
                .seal_in_place_separate_tag(
                    AwsNonce::assume_unique_for_key([0; 12]),
                    Aad::empty(),
                    black_box(seal_buf.as_mut_slice()),
                )
                .unwrap()
        }),
        Case::new("aws_lc_gcm_open_copy", "random", r, 0, move || {
            // Copy in (as a reused buffer would be filled), then open in place.
            work.copy_from_slice(black_box(&sealed));
            key.open_in_place(
                AwsNonce::assume_unique_for_key([0; 12]),
                Aad::empty(),
                &mut work,
            )
            .unwrap()
            .len()
        }),
    ]
}

fn zlib(data: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        flate2::Compression::new(level),
    );
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn main() {
    let options = Options::from_args();
    let random = noise(MAX_CONTENT, SEED);
    let text = text(MAX_CONTENT, SEED);
    if let Some(dir) = &options.dump {
        std::fs::create_dir_all(dir).expect("create the dump dir");
        std::fs::write(dir.join("random.bin"), &random).expect("write random.bin");
        std::fs::write(dir.join("text.txt"), &text).expect("write text.txt");
        eprintln!("wrote random.bin and text.txt to {}", dir.display());
        return;
    }
    eprintln!(
        "codec bench: content {MAX_CONTENT} bytes; {} reps of ~{} ms after {} ms warm-up; \
         single thread",
        options.reps,
        options.batch.as_millis(),
        options.warmup.as_millis()
    );
    let mut cases = codec_cases("random", &random);
    cases.extend(codec_cases("text", &text));
    cases.extend(primitive_cases(&random, &text));
    #[cfg(feature = "bench-aws-lc")]
    cases.extend(aws_lc_cases(&random));
    if let Some(only) = &options.only {
        cases.retain(|c| c.name().contains(only.as_str()));
    }
    for case in &mut cases {
        case.warm_up(options.warmup, options.batch);
    }
    // Round-robin: every case runs one batch per round, so a disturbance of the shared
    // machine hits all of them alike and the ratios between them stay meaningful.
    for _ in 0..options.reps {
        for case in &mut cases {
            case.time_batch();
        }
    }
    for case in &cases {
        case.report();
    }
}
