//! The canonical records of the four feed kinds (docs/feeds.md), as ingest produces them
//! and the store keeps them. Each person-bearing record carries a [`PersonMention`],
//! the input to identity resolution.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::{
    CaseLevel, CaseRole, ClosureReason, DaRole, DashRisk, FeedKind, Mark, NhsNumber, NoticeType,
    Postcode, Session, Tenure, Upn, Uprn, Urn,
};

/// One record's worth of facts about a person, as that feed recorded them.
///
/// Invariant: `mention_key` follows docs/feeds.md for the feed kind, so the same person in
/// the same source always gets the same key (a pupil with 300 marks is one mention).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersonMention {
    /// The mention key of docs/feeds.md ("Mention key" under each kind).
    pub mention_key: String,
    /// Trimmed, inner whitespace collapsed; spelling and case kept for display.
    pub forename: Option<String>,
    pub surname: Option<String>,
    pub dob: Option<NaiveDate>,
    pub gender: Option<String>,
    pub address_line1: Option<String>,
    pub postcode: Option<Postcode>,
    pub uprn: Option<Uprn>,
    pub upn: Option<Upn>,
    pub nhs_number: Option<NhsNumber>,
    /// The record's own role word for the person (`pupil`, `victim`, `child`, `tenant`, `parent`…).
    pub role: String,
    /// For a pupil, or a child the police notified a school about.
    pub school_urn: Option<Urn>,
}

/// One session mark for one pupil.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendanceMark {
    pub school_urn: Urn,
    pub pupil: PersonMention,
    pub date: NaiveDate,
    pub session: Session,
    pub mark: Mark,
}

/// One person named in a domestic-abuse notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaPerson {
    pub notification_id: String,
    /// `person_ref` when given, else the 1-based order of the row among all rows
    /// of the notification in the file.
    pub person_key: String,
    pub incident_at: DateTime<Utc>,
    pub role: DaRole,
    pub person: PersonMention,
    /// Incident / household address.
    pub address_line1: String,
    pub postcode: Postcode,
    pub uprn: Option<Uprn>,
    pub dash_risk: Option<DashRisk>,
    pub crime_ref: Option<String>,
    pub school_urn: Option<Urn>,
}

/// One eviction or possession notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HousingNotice {
    pub notice_id: String,
    pub notice_type: NoticeType,
    pub served_on: NaiveDate,
    pub possession_date: Option<NaiveDate>,
    pub tenure: Option<Tenure>,
    pub address_line1: String,
    pub postcode: Postcode,
    pub uprn: Option<Uprn>,
    pub tenant: PersonMention,
    pub children_in_household: Option<u32>,
}

/// One person on one case, from the nightly case-system snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseMember {
    pub case_id: String,
    pub family_id: String,
    pub person_id: String,
    pub role: CaseRole,
    pub person: PersonMention,
    pub referral_date: NaiveDate,
    pub opened_on: Option<NaiveDate>,
    pub closed_on: Option<NaiveDate>,
    pub closure_reason: Option<ClosureReason>,
    pub level: Option<CaseLevel>,
    pub locality: Option<String>,
    pub lead_professional: Option<String>,
}

/// A canonical record of one of the four kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Attendance(AttendanceMark),
    PoliceDa(DaPerson),
    Housing(HousingNotice),
    Assessment(CaseMember),
}

impl Record {
    /// The feed kind this record belongs to.
    pub fn kind(&self) -> FeedKind {
        match self {
            Record::Attendance(_) => FeedKind::Attendance,
            Record::PoliceDa(_) => FeedKind::PoliceDa,
            Record::Housing(_) => FeedKind::Housing,
            Record::Assessment(_) => FeedKind::Assessment,
        }
    }

    /// The person this record mentions.
    pub fn mention(&self) -> &PersonMention {
        match self {
            Record::Attendance(r) => &r.pupil,
            Record::PoliceDa(r) => &r.person,
            Record::Housing(r) => &r.tenant,
            Record::Assessment(r) => &r.person,
        }
    }
}

/// A row that could not be turned into a record: quarantined with where and why.
///
/// Invariant: `raw` holds the row's cells as read (header → text), so a
/// quarantined row is never lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowProblem {
    /// 1-based row number as a person opening the file would count it (the header
    /// row of a CSV or sheet is row 1 when it is the first line; JSON records count
    /// from 1).
    pub row: u64,
    /// The canonical column at fault, when one is.
    pub column: Option<String>,
    /// What is wrong, in words that say what to fix.
    pub reason: String,
    /// The row's cells as read, as a JSON object.
    pub raw: String,
}
