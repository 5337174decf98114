//! How far a grant reaches into one resource type: everything, nothing, or only the resources
//! inside some confinements (a patient's compartment, a v2 query, a care team's patients). The
//! engine turns a confinement into SQL; this module only decides which ones apply.

use super::scope::{Context, Grant, Interaction};

/// One way a resource can be within reach. Both parts must hold; `None` means no limit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Confine {
    /// The resource must be in the Patient compartment of one of these patients.
    pub patients: Option<Vec<String>>,
    /// The resource must match this search query (a SMART v2 query restriction).
    pub query: Option<String>,
}

impl Confine {
    pub fn is_free(&self) -> bool {
        self.patients.is_none() && self.query.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every resource of the type.
    All,
    /// Only the resources inside at least one of these.
    Only(Vec<Confine>),
    /// No rule grants the interaction.
    Nothing,
}

impl Reach {
    /// Whether the caller sees the type whole.
    pub fn is_all(&self) -> bool {
        matches!(self, Reach::All)
    }
}

impl Grant {
    /// How far `interaction` on `rtype` reaches. `panel`, when given, confines `user/` rules to
    /// those patients (the care-team policy, a patient's own record); `patient/` rules reach the
    /// launch patient's compartment only — nothing without a launch patient, or with one outside
    /// the panel.
    pub fn reach(&self, rtype: &str, interaction: Interaction, panel: Option<&[String]>) -> Reach {
        let mut out: Vec<Confine> = Vec::new();
        for rule in self.rules_for(rtype, interaction) {
            let patients = match rule.context {
                // The launch patient, and only if the user's panel (when there is one) holds it.
                Context::Patient => match &self.patient {
                    Some(p) if panel.is_none_or(|panel| panel.contains(p)) => Some(vec![p.clone()]),
                    _ => continue,
                },
                // The panel confines patient data; other types (Practitioner, Organization)
                // stay whole.
                Context::User => panel
                    .filter(|_| crate::search::compartment::patient_links(rtype).is_some())
                    .map(<[String]>::to_vec),
                Context::System => None,
            };
            let c = Confine { patients, query: rule.query.clone() };
            if c.is_free() {
                return Reach::All;
            }
            if !out.contains(&c) {
                out.push(c);
            }
        }
        if out.is_empty() {
            Reach::Nothing
        } else {
            out.sort();
            Reach::Only(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(scope: &str, patient: Option<&str>) -> Grant {
        let mut g = Grant::parse(scope).unwrap();
        g.patient = patient.map(str::to_string);
        g
    }

    #[test]
    fn patient_rules_confine_to_the_launch_patient() {
        let g = grant("patient/Observation.rs", Some("p1"));
        let only = Reach::Only(vec![Confine { patients: Some(vec!["p1".into()]), query: None }]);
        assert_eq!(g.reach("Observation", Interaction::Read, None), only);
        assert_eq!(g.reach("Patient", Interaction::Read, None), Reach::Nothing);
        assert_eq!(g.reach("Observation", Interaction::Create, None), Reach::Nothing);
        // Without a launch patient a patient/ rule reaches nothing.
        assert_eq!(grant("patient/*.rs", None).reach("Observation", Interaction::Read, None), Reach::Nothing);
    }

    #[test]
    fn an_unconfined_rule_wins_and_queries_are_alternatives() {
        let g = grant("patient/Observation.rs user/Observation.r", Some("p1"));
        assert_eq!(g.reach("Observation", Interaction::Read, None), Reach::All);
        // ...unless the care-team panel confines user/ rules.
        let panel = ["p1".to_string(), "p2".to_string()];
        let Reach::Only(alts) = g.reach("Observation", Interaction::Read, Some(&panel)) else { panic!() };
        assert_eq!(alts.len(), 2);
        // A launch patient outside the user's panel is not reached through patient/ rules.
        let panel = ["p2".to_string()];
        let Reach::Only(alts) = g.reach("Observation", Interaction::Read, Some(&panel)) else { panic!() };
        assert_eq!(alts, [Confine { patients: Some(panel.to_vec()), query: None }]);
        let g = grant(
            "patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs",
            Some("p1"),
        );
        let Reach::Only(alts) = g.reach("Observation", Interaction::Search, None) else { panic!() };
        assert_eq!(alts.len(), 2);
        assert!(alts.iter().all(|c| c.patients.as_deref() == Some(&["p1".to_string()][..])));
        let g = grant("system/Observation.rs?status=final", None);
        assert_eq!(
            g.reach("Observation", Interaction::Search, None),
            Reach::Only(vec![Confine { patients: None, query: Some("status=final".into()) }])
        );
    }
}
