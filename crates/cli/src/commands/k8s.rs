//! Kubernetes output: the objects `bundle build --k8s-*` emits, and `anchorage k8s patch`.

use std::path::Path;

use anchorage_k8s::{
    CtbSelector, Layout, Object, ObjectName, PatchFormat, PatchRequest, TrustSource, WorkloadKind,
    cluster_trust_bundle, env_var, to_json, to_yaml, trust_configmap, trust_secret,
    wasmcloud_configmap, workload_patch,
};
use anchorage_trust::Bundle;
use anchorage_trust::env::{EnvRequest, JavaStoreType, JavaTrustStore, variables};

use crate::args::{BuildArgs, K8sPatchArgs, ManifestFormat, PatchType};
use crate::exit::{Code, Failure};

/// True when `bundle build` was asked for any Kubernetes object.
pub(crate) fn wanted(args: &BuildArgs) -> bool {
    args.k8s_configmap.is_some()
        || args.k8s_secret.is_some()
        || args.k8s_wasmcloud_configmap.is_some()
        || args.k8s_cluster_trust_bundle.is_some()
}

/// The objects `bundle build` was asked for, rendered, in a fixed order.
pub(crate) fn render_objects(bundle: &Bundle, args: &BuildArgs) -> Result<String, Failure> {
    // One copy of each namespaced object per --namespace (none: kubectl's current namespace).
    let namespaces: Vec<Option<&String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        let mut unique: Vec<Option<&String>> = Vec::new();
        for ns in &args.namespaces {
            if !unique.contains(&Some(ns)) {
                unique.push(Some(ns));
            }
        }
        unique
    };
    let named = |name: &String, ns: Option<&String>| {
        let meta = ObjectName::new(name.clone());
        match ns {
            Some(ns) => meta.in_namespace(ns.clone()),
            None => meta,
        }
    };
    let mut layout = if args.k8s_bundle_only {
        Layout::bundle_only()
    } else {
        Layout::default()
    };
    if args.k8s_rhel_aliases {
        layout = layout.with_rhel_aliases();
    }
    if args.k8s_extra_pem {
        layout = layout.with_extra();
    }
    if args.k8s_pkcs12 {
        layout = layout.with_pkcs12();
    }
    let mut objects: Vec<Object> = Vec::new();
    for ns in &namespaces {
        if let Some(name) = &args.k8s_configmap {
            objects.push(trust_configmap(bundle, &named(name, *ns), &layout)?.into());
        }
        if let Some(name) = &args.k8s_secret {
            objects.push(trust_secret(bundle, &named(name, *ns), &layout)?.into());
        }
        if let Some(name) = &args.k8s_wasmcloud_configmap {
            objects.push(wasmcloud_configmap(bundle, &named(name, *ns))?.into());
        }
    }
    if let Some(name) = &args.k8s_cluster_trust_bundle {
        // Cluster-scoped: --namespace does not apply.
        let ctb = cluster_trust_bundle(
            bundle,
            &ObjectName::new(name.clone()),
            args.k8s_signer.as_deref(),
        )?;
        objects.push(ctb.into());
    }
    Ok(match args.k8s_format {
        ManifestFormat::Yaml => to_yaml(&objects)?,
        ManifestFormat::Json => to_json(&objects)? + "\n",
    })
}

/// `anchorage k8s patch`.
pub(crate) fn patch(args: K8sPatchArgs) -> Result<Code, Failure> {
    let kind = WorkloadKind::from_kind(&args.kind).ok_or_else(|| {
        let kinds: Vec<_> = WorkloadKind::ALL.iter().map(|k| k.kind()).collect();
        Failure::new(
            Code::Usage,
            format!(
                "--kind {}: not a workload kind; one of {}",
                args.kind,
                kinds.join(", ")
            ),
        )
    })?;
    let (source, hashed_keys) = match (&args.configmap, &args.secret, &args.cluster_trust_bundle) {
        (Some(name), _, _) => (TrustSource::ConfigMap(name.clone()), !args.bundle_only),
        (_, Some(name), _) => (TrustSource::Secret(name.clone()), !args.bundle_only),
        (_, _, Some(name)) => (
            TrustSource::ClusterTrustBundle(CtbSelector::Name(name.clone())),
            false,
        ),
        _ => (
            TrustSource::ClusterTrustBundle(CtbSelector::Signer {
                signer_name: args.ctb_signer.clone().unwrap_or_default(),
                match_labels: Default::default(),
            }),
            false,
        ),
    };
    let mut request = PatchRequest::new(kind, source, args.containers.clone());
    request.init_containers = args.init_containers.clone();
    request.workload_name = args.name.clone();
    request.workload_namespace = args.namespace.clone();
    request.mount_path = args.mount_path.clone();
    if !args.no_env {
        // Paths as the container sees them. Without --extra-pem, NODE_EXTRA_CA_CERTS and
        // DENO_CERT name the combined bundle (harmless: they add to Node's own roots).
        let mount = Path::new(&args.mount_path);
        let env = EnvRequest {
            bundle: mount.join(&request.bundle_file),
            dir: hashed_keys.then(|| mount.to_path_buf()),
            extra: args
                .extra_pem
                .then(|| mount.join(anchorage_k8s::DEFAULT_EXTRA_KEY)),
            java: args.pkcs12.then(|| JavaTrustStore {
                path: mount.join(anchorage_k8s::DEFAULT_PKCS12_KEY),
                store_type: JavaStoreType::Pkcs12,
                // Password-less (no MAC): the JVM loads it without one.
                password: None,
            }),
        };
        request.env = variables(&env)
            .into_iter()
            .map(|v| env_var(v.name, v.value))
            .collect();
    }
    if let Some(path) = &args.bundle {
        let bundle = super::read_option_bundle(path, "--bundle")?;
        request.pod_annotations.insert(
            anchorage_k8s::BUNDLE_SHA256_ANNOTATION.to_owned(),
            anchorage_k8s::bundle_sha256(&bundle),
        );
    }
    if args.current.is_some() && args.patch_type != PatchType::Json {
        return Err(Failure::new(
            Code::Usage,
            "--current needs --type json: a strategic merge patch does not read the workload",
        ));
    }
    crate::io::check_inputs(
        args.bundle
            .iter()
            .map(|p| ("--bundle", p.as_path()))
            .chain(args.current.iter().map(|p| ("--current", p.as_path()))),
    )?;
    if args.patch_type == PatchType::Json {
        let Some(path) = &args.current else {
            return Err(Failure::new(
                Code::Usage,
                "--type json needs --current FILE (the workload as `kubectl get -o json` prints it): a JSON patch addresses containers by index",
            ));
        };
        let bytes = crate::io::read_input("--current", path)?;
        let current = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::new(
                Code::BadInput,
                format!(
                    "--current {}: not JSON ({e}); use `kubectl get ... -o json`",
                    crate::io::display(path)
                ),
            )
        })?;
        request.format = PatchFormat::Json { current };
    }
    let patch = workload_patch(&request)?;
    let text = serde_json::to_string_pretty(&patch)
        .map_err(|e| Failure::new(Code::Failure, format!("cannot render JSON: {e}")))?;
    outln!("{text}");
    Ok(Code::Ok)
}
