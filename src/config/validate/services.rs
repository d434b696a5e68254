//! [checks.*] and [[services]].

use super::*;

impl Validator<'_> {
    pub(super) fn checks(&mut self, raw: Vec<(S<String>, Option<RawCheck>)>) -> BTreeMap<String, Check> {
        let mut out = BTreeMap::new();
        for (name, check) in raw {
            let Some(check) = check else { continue };
            let key = format!("checks.{}", name.get_ref());
            if let Some(c) = self.check(check, &key) {
                out.insert(name.into_inner(), c);
            }
        }
        out
    }

    pub(super) fn check(&mut self, raw: RawCheck, key: &str) -> Option<Check> {
        let kind: CheckKind = self.word(raw.kind.as_ref(), &format!("{key}.kind"))?;
        let port = match (&raw.port, kind) {
            (Some(p), _) => self.int(p, &format!("{key}.port"), 1, 65535) as u16,
            (None, CheckKind::Https) => 443,
            (None, CheckKind::Tcp | CheckKind::Agent) => {
                let span = raw.kind.as_ref().map(S::span).unwrap_or(0..0);
                self.errors.at(span, format!("{key}.port"), format!("is required for kind = \"{}\"", kind.name()));
                0
            }
            (None, _) => 80,
        };
        let path = raw.path.as_ref().map_or(defaults::CHECK_PATH.to_string(), |p| p.get_ref().clone());
        if !path.starts_with('/') || path.chars().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()) {
            self.err(raw.path.as_ref().unwrap(), &format!("{key}.path"), "must start with / and hold no spaces");
        }
        let tls_verify = raw.tls_verify.as_ref().is_none_or(|v| *v.get_ref());
        if let Some(v) = &raw.tls_verify
            && kind != CheckKind::Https
        {
            self.err(v, &format!("{key}.tls_verify"), "is only for kind = \"https\"");
        }
        if kind == CheckKind::Https && tls_verify && raw.host.is_none() {
            let span = raw.kind.as_ref().map(S::span).unwrap_or(0..0);
            self.errors.at(
                span,
                format!("{key}.host"),
                "is required for kind = \"https\" with tls_verify (the certificate is checked against it)",
            );
        }
        if let Some(h) = &raw.host
            && (h.get_ref().is_empty() || h.get_ref().chars().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()))
        {
            self.err(h, &format!("{key}.host"), "must be a host name without spaces");
        }
        if let Some(h) = &raw.agent_header {
            if !matches!(kind, CheckKind::Http | CheckKind::Https) {
                self.err(h, &format!("{key}.agent_header"), "is only for kind = \"http\" or \"https\"");
            } else if hyper::header::HeaderName::from_bytes(h.get_ref().as_bytes()).is_err() {
                self.err(h, &format!("{key}.agent_header"), "must be an HTTP header name");
            }
        }
        if let Some(send) = &raw.agent_send {
            if kind != CheckKind::Agent {
                self.err(send, &format!("{key}.agent_send"), "is only for kind = \"agent\"");
            } else if send.get_ref().is_empty() || send.get_ref().len() > 1024 {
                self.err(send, &format!("{key}.agent_send"), "must be 1 to 1024 bytes");
            }
        }
        let expect_status = match &raw.expect_status {
            Some(list) if list.get_ref().is_empty() => {
                self.err(list, &format!("{key}.expect_status"), "must list at least one status code");
                vec![]
            }
            Some(list) => {
                list.get_ref().iter().map(|s| self.int(s, &format!("{key}.expect_status"), 100, 599) as u16).collect()
            }
            None => vec![200],
        };
        let interval = self.duration(raw.interval.as_ref(), &format!("{key}.interval"), defaults::CHECK_INTERVAL);
        let timeout = self.duration(raw.timeout.as_ref(), &format!("{key}.timeout"), defaults::CHECK_TIMEOUT);
        if timeout >= interval {
            let span = raw.timeout.as_ref().or(raw.interval.as_ref()).map(S::span).unwrap_or(0..0);
            self.errors.at(
                span,
                format!("{key}.timeout"),
                format!("must be less than interval ({timeout:?} is not below {interval:?})"),
            );
        }
        let rise = raw.rise.as_ref().map_or(defaults::RISE, |r| self.int(r, &format!("{key}.rise"), 1, 100) as u32);
        let fall = raw.fall.as_ref().map_or(defaults::FALL, |f| self.int(f, &format!("{key}.fall"), 1, 100) as u32);
        Some(Check {
            kind,
            port,
            path,
            host: raw.host.map(S::into_inner),
            expect_status,
            expect_body: raw.expect_body.map(S::into_inner),
            tls_verify,
            agent_header: raw.agent_header.map(S::into_inner),
            agent_send: raw.agent_send.map(S::into_inner),
            source: None, // [health] probe_source, filled in with it
            interval,
            timeout,
            rise,
            fall,
        })
    }

    /// Validates `raw` services onto `out` (`seen` their names so far).
    pub(super) fn services_into(
        &mut self,
        (out, seen): &mut (Vec<Service>, std::collections::HashSet<Name>),
        raw: Vec<(RawService, String)>,
        regions: &BTreeMap<String, Region>,
        checks: &[String],
    ) {
        for (service, key) in raw {
            let Some(s) = self.service(service, &key, regions, checks) else { continue };
            if !seen.insert(s.name.clone()) {
                let (line, column) = s.at;
                self.errors.list.push(ConfigError {
                    file: self.errors_file(),
                    line,
                    column,
                    key: format!("{key}.name"),
                    message: format!("service {} is configured twice", s.name),
                });
                continue;
            }
            out.push(s);
        }
    }

    pub(super) fn service(
        &mut self,
        raw: RawService,
        key: &str,
        regions: &BTreeMap<String, Region>,
        checks: &[String],
    ) -> Option<Service> {
        let name = self.name(&raw.name, &format!("{key}.name"));
        let policy = self.word(raw.policy.as_ref(), &format!("{key}.policy")).unwrap_or(Policy::All);
        let order = self.word(raw.order.as_ref(), &format!("{key}.order")).unwrap_or(Order::RoundRobin);
        match &raw.check {
            Some(c) if !checks.contains(c.get_ref()) => {
                self.err(c, &format!("{key}.check"), format!("names no check; known: {}", names(checks.iter())));
            }
            Some(_) => {}
            None if policy != Policy::All => {
                self.err(&raw.name, &format!("{key}.check"), "is required for every policy but \"all\"");
            }
            None => {}
        }
        let ttl = raw.ttl.as_ref().map_or(defaults::TTL, |t| self.int(t, &format!("{key}.ttl"), 0, 86400) as u32);
        let default_answers =
            if order == Order::RoundRobin { defaults::MAX_ANSWERS } else { defaults::MAX_ANSWERS_PICKED };
        let max_answers = raw
            .max_answers
            .as_ref()
            .map_or(default_answers, |m| self.int(m, &format!("{key}.max_answers"), 1, 64) as usize);
        let when_all_down =
            self.word(raw.when_all_down.as_ref(), &format!("{key}.when_all_down")).unwrap_or(WhenAllDown::All);
        let max_registrations = raw.max_registrations.as_ref().map_or(defaults::MAX_REGISTRATIONS, |m| {
            self.int(m, &format!("{key}.max_registrations"), 0, 100_000) as u32
        });
        let targets = self.targets(&raw.targets, key, policy, regions);
        let accept_registrations = raw.accept_registrations.as_ref().map_or(targets.is_empty(), |a| *a.get_ref());
        if let Some(accept) = raw.accept_registrations.as_ref().filter(|a| *a.get_ref() && max_registrations == 0) {
            self.err(
                accept,
                &format!("{key}.accept_registrations"),
                format!("is true but {key}.max_registrations is 0, which closes the service to registrations"),
            );
        }
        let registration_networks = raw.registration_networks.as_ref().map(|list| {
            list.get_ref().iter().filter_map(|n| self.network(n, &format!("{key}.registration_networks"))).collect()
        });
        let registration_token =
            raw.registration_token_file.as_ref().and_then(|f| self.token(f, &format!("{key}.registration_token_file")));
        let at = self.location(raw.name.span());
        Some(Service {
            name: name?,
            policy,
            order,
            check: raw.check.map(S::into_inner),
            ttl,
            max_answers,
            when_all_down,
            max_registrations,
            accept_registrations: accept_registrations && max_registrations > 0,
            registration_networks,
            registration_token,
            targets,
            at,
        })
    }

    /// `[[templates]]` (SPEC §9): each pattern `*.PARENT`, its caps, and its service keys
    /// checked as a service's are.
    pub(super) fn templates(
        &mut self,
        raw: Vec<(RawTemplate, String)>,
        regions: &BTreeMap<String, Region>,
        checks: &[String],
    ) -> Vec<Template> {
        let mut out: Vec<Template> = Vec::new();
        for (t, key) in raw {
            let pattern_key = format!("{key}.pattern");
            let text = t.pattern.get_ref();
            let parent = match text.strip_prefix("*.") {
                Some(rest) if !rest.contains('*') && !rest.is_empty() && rest != "." => {
                    self.name(&S::new(t.pattern.span(), rest.to_string()), &pattern_key)
                }
                _ => {
                    self.err(
                        &t.pattern,
                        &pattern_key,
                        "must be \"*.\" and a name, e.g. \"*.svc.lb.example.\" (* is one label)",
                    );
                    None
                }
            };
            let max_services =
                t.max_services.as_ref().map_or(1000, |m| self.int(m, &format!("{key}.max_services"), 1, 1_000_000));
            let max_registrations_total = t
                .max_registrations_total
                .as_ref()
                .map_or(10_000, |m| self.int(m, &format!("{key}.max_registrations_total"), 1, 10_000_000));
            // a pattern already refused is not refused again as a name
            let name = match parent {
                Some(_) => t.pattern,
                None => S::new(t.pattern.span(), "*.pattern.invalid.".to_string()),
            };
            let service = RawService {
                name,
                policy: t.policy,
                order: t.order,
                check: t.check,
                ttl: t.ttl,
                max_answers: t.max_answers,
                when_all_down: t.when_all_down,
                max_registrations: t.max_registrations,
                accept_registrations: t.accept_registrations,
                registration_networks: t.registration_networks,
                registration_token_file: t.registration_token_file,
                targets: Vec::new(),
            };
            let at = service.name.span();
            let (Some(service), Some(parent)) = (self.service(service, &key, regions, checks), parent) else {
                continue;
            };
            if out.iter().any(|o| o.parent == parent) {
                self.errors.at(at, pattern_key, format!("*.{parent} is the pattern of an earlier template too"));
                continue;
            }
            let mut pattern = Name::from_ascii("*").expect("a label").append_domain(&parent).expect("fits");
            pattern.set_fqdn(true);
            out.push(Template {
                pattern,
                parent,
                max_services: max_services as usize,
                max_registrations_total: max_registrations_total as usize,
                service,
            });
        }
        out
    }

    pub(super) fn targets(
        &mut self,
        raw: &[S<RawTarget>],
        key: &str,
        policy: Policy,
        regions: &BTreeMap<String, Region>,
    ) -> Vec<Target> {
        let mut out: Vec<Target> = Vec::new();
        for (i, item) in raw.iter().enumerate() {
            let key = format!("{key}.targets[{i}]");
            let target = match item.get_ref() {
                RawTarget::Address(a) => {
                    let a = S::new(item.span(), a.clone());
                    self.target(&key, &a, None, policy, &item.span(), regions)
                }
                RawTarget::Table(t) => self.target(&key, &t.address, Some(t), policy, &item.span(), regions),
            };
            let Some(target) = target else { continue };
            if out.iter().any(|o| o.address == target.address) {
                self.err(item, &key, format!("{} is listed twice in this service", target.address));
                continue;
            }
            out.push(target);
        }
        out
    }

    pub(super) fn target(
        &mut self,
        key: &str,
        address: &S<String>,
        table: Option<&RawTargetTable>,
        policy: Policy,
        span: &Range<usize>,
        regions: &BTreeMap<String, Region>,
    ) -> Option<Target> {
        let addr = self.unicast(address, &format!("{key}.address"));
        let mut target = Target { address: addr?, weight: 1, region: None, priority: 1, check_address: None };
        if let Some(t) = table {
            if let Some(w) = &t.weight {
                target.weight = self.int(w, &format!("{key}.weight"), 0, 1000) as u32;
            }
            if let Some(p) = &t.priority {
                target.priority = self.int(p, &format!("{key}.priority"), 1, 255) as u8;
            }
            if let Some(r) = &t.region {
                if regions.contains_key(r.get_ref()) {
                    target.region = Some(r.get_ref().clone());
                } else {
                    self.err(r, &format!("{key}.region"), format!("names no region; known: {}", names(regions.keys())));
                }
            }
            if let Some(c) = &t.check_address {
                target.check_address = self.unicast(c, &format!("{key}.check_address"));
            }
        }
        if policy == Policy::Gslb && table.and_then(|t| t.region.as_ref()).is_none() {
            self.errors.at(
                span.clone(),
                format!("{key}.region"),
                "is required: every target of a gslb service needs a region",
            );
        }
        Some(target)
    }
}
