//! Households: the borrower of record, with a dated registry status series.

use serde::{Deserialize, Serialize};

use super::date::BusinessDate;

/// Registry status of a household (建档立卡 and its successors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HouseholdStatus {
    /// 建档立卡贫困户
    RegisteredPoor,
    /// 脱贫户: exited poverty, still eligible.
    Exited,
    /// 监测对象
    Monitored,
    /// 边缘户
    Edge,
    /// 不享受政策
    NotEligible,
    /// 清退
    Removed,
    /// Moved out of the county.
    MovedOut,
}

impl HouseholdStatus {
    /// Whether a policy may list the status as eligible: registered poor, exited, monitored
    /// and edge households; never one not eligible, removed or moved out (DESIGN.md).
    pub fn may_be_eligible(self) -> bool {
        !matches!(
            self,
            HouseholdStatus::NotEligible | HouseholdStatus::Removed | HouseholdStatus::MovedOut
        )
    }

    pub const ALL: [HouseholdStatus; 7] = [
        HouseholdStatus::RegisteredPoor,
        HouseholdStatus::Exited,
        HouseholdStatus::Monitored,
        HouseholdStatus::Edge,
        HouseholdStatus::NotEligible,
        HouseholdStatus::Removed,
        HouseholdStatus::MovedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HouseholdStatus::RegisteredPoor => "registered_poor",
            HouseholdStatus::Exited => "exited",
            HouseholdStatus::Monitored => "monitored",
            HouseholdStatus::Edge => "edge",
            HouseholdStatus::NotEligible => "not_eligible",
            HouseholdStatus::Removed => "removed",
            HouseholdStatus::MovedOut => "moved_out",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One entry of the status series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    pub status: HouseholdStatus,
    pub effective_date: BusinessDate,
    pub reason: String,
}

/// The status on `date`: the entry with the latest effective date on or before it; among
/// entries of the same date, the one recorded last. `entries` must be in recording order.
pub fn status_on(entries: &[StatusEntry], date: BusinessDate) -> Option<HouseholdStatus> {
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.effective_date <= date)
        .max_by_key(|(i, e)| (e.effective_date, *i))
        .map(|(_, e)| e.status)
}

/// The household's status on `date` by `entries` ([`status_on`]) when it is one the programme
/// never lends to (not eligible, removed, moved out): on a contract's date, the loan was falsely
/// obtained. The writer's withholding of a claim's line, the claims' recheck and verify's
/// judgement of a withheld or clawed-back line all ask this one question.
pub fn never_lent_to_on(entries: &[StatusEntry], date: BusinessDate) -> Option<HouseholdStatus> {
    status_on(entries, date).filter(|s| !s.may_be_eligible())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::date::parse_date;

    fn entry(status: HouseholdStatus, date: &str) -> StatusEntry {
        StatusEntry { status, effective_date: parse_date(date).unwrap(), reason: String::new() }
    }

    #[test]
    fn status_series_is_read_by_date_then_recording_order() {
        let series = vec![
            entry(HouseholdStatus::RegisteredPoor, "2016-03-01"),
            entry(HouseholdStatus::Removed, "2020-06-01"),
            // Recorded later but effective earlier: a back-dated correction.
            entry(HouseholdStatus::Exited, "2019-12-31"),
            entry(HouseholdStatus::Monitored, "2020-06-01"),
        ];
        let on = |d| status_on(&series, parse_date(d).unwrap());
        assert_eq!(on("2016-02-29"), None);
        assert_eq!(on("2018-01-01"), Some(HouseholdStatus::RegisteredPoor));
        assert_eq!(on("2020-01-01"), Some(HouseholdStatus::Exited));
        assert_eq!(on("2020-06-01"), Some(HouseholdStatus::Monitored));
    }

    #[test]
    fn a_household_never_lent_to_is_named_by_its_status_on_the_day() {
        let series = vec![
            entry(HouseholdStatus::RegisteredPoor, "2016-03-01"),
            entry(HouseholdStatus::Exited, "2019-01-01"),
            entry(HouseholdStatus::NotEligible, "2020-06-01"),
            entry(HouseholdStatus::Monitored, "2021-01-01"),
            entry(HouseholdStatus::MovedOut, "2022-01-01"),
        ];
        let on = |d| never_lent_to_on(&series, parse_date(d).unwrap());
        assert_eq!(on("2016-02-29"), None, "no status yet");
        assert_eq!(on("2019-06-01"), None, "exited households stay eligible");
        assert_eq!(on("2020-06-01"), Some(HouseholdStatus::NotEligible));
        assert_eq!(on("2021-06-01"), None, "monitored again");
        assert_eq!(on("2023-01-01"), Some(HouseholdStatus::MovedOut));
        let removed = [entry(HouseholdStatus::Removed, "2020-01-01")];
        assert_eq!(
            never_lent_to_on(&removed, parse_date("2020-01-01").unwrap()),
            Some(HouseholdStatus::Removed)
        );
    }
}
