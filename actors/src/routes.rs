//! Basic Ingest routes: which local topics are sent to an AWS IoT rule directly
//! (`$aws/rules/{rule}/{cloud topic}`, no message broker, no messaging charge) instead of to the
//! cloud topic [`topics::uplink`](crate::topics::uplink) gives them. Pure: the route table, MQTT
//! filter matching, and the checks of filters and rule names that `config check` applies.

/// Every Basic Ingest topic starts with this; the rule name and a `/` follow.
pub const BASIC_INGEST_PREFIX: &str = "$aws/rules/";

/// AWS IoT: a rule name is at most 128 characters.
pub const MAX_RULE_NAME: usize = 128;

/// One configured route: local messages matching `filter` go to the rule `rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// An MQTT topic filter over local topics (`telemetry/#`, `t/+/+/temp`).
    pub filter: String,
    /// The AWS IoT rule (Basic Ingest) that receives them.
    pub rule: String,
}

/// The configured routes in order; the first whose filter matches a local topic wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// A table of `routes`, already validated ([`check_filter`], [`check_rule_name`]).
    pub fn new(routes: Vec<Route>) -> Self {
        Routes { routes }
    }

    /// The routes, in configuration order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// True when no route is configured.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The rule of the first route whose filter matches `local`.
    pub fn rule_for(&self, local: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| filter_matches(&r.filter, local))
            .map(|r| r.rule.as_str())
    }

    /// The topic a message from `local` is published to, given the cloud topic it maps to:
    /// `$aws/rules/{rule}/{cloud}` when a route matches, else `cloud` unchanged. Reserved cloud
    /// topics (`$aws/things/…`: Jobs requests) are never routed; they must reach their service.
    pub fn cloud_topic(&self, local: &str, cloud: String) -> String {
        if self.routes.is_empty() || cloud.starts_with('$') {
            return cloud;
        }
        match self.rule_for(local) {
            Some(rule) => routed_topic(rule, &cloud),
            None => cloud,
        }
    }

    /// The distinct rule names, in configuration order.
    pub fn rules(&self) -> Vec<&str> {
        let mut rules: Vec<&str> = Vec::new();
        for r in &self.routes {
            if !rules.contains(&r.rule.as_str()) {
                rules.push(&r.rule);
            }
        }
        rules
    }
}

/// `$aws/rules/{rule}/{cloud}`. AWS's topic limits apply to `cloud` only.
pub fn routed_topic(rule: &str, cloud: &str) -> String {
    format!("{BASIC_INGEST_PREFIX}{rule}/{cloud}")
}

/// A local topic that `filter` matches, for a probe: `#` left out, `+` levels empty (empty
/// tenant and device levels of Hono topics mean this gateway's own).
pub fn sample_topic(filter: &str) -> String {
    let levels: Vec<&str> = filter
        .split('/')
        .take_while(|l| *l != "#")
        .map(|l| if l == "+" { "" } else { l })
        .collect();
    levels.join("/")
}

/// MQTT matching: `+` is one level (empty ones too), a final `#` is that level and everything
/// below, including the parent itself (`a/#` matches `a`).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if level == "+" || level == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// MQTT filter syntax: not empty, `#` only as the whole last level, `+` only as a whole level.
pub fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("is empty; use an MQTT topic filter such as \"telemetry/#\"".into());
    }
    if filter.contains('\0') {
        return Err(format!("{filter:?} contains a NUL character"));
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(format!(
                "{filter:?} is not an MQTT topic filter: # must be a whole level and the last one (\"telemetry/#\")"
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!(
                "{filter:?} is not an MQTT topic filter: + must be a whole level (\"t/+/+/temp\")"
            ));
        }
    }
    Ok(())
}

/// AWS IoT rule names: `[a-zA-Z0-9_]+`, at most 128 characters.
pub fn check_rule_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_RULE_NAME {
        return Err(format!(
            "{name:?} must be 1 to {MAX_RULE_NAME} characters (the name of an AWS IoT rule)"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "{name:?} contains {c:?}; an AWS IoT rule name allows only a-z A-Z 0-9 _"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
