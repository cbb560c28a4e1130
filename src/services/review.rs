//! Reviewing drafts: the queue a person reads, and what they do with each draft (save an edit,
//! approve, reject, retry a failed publish, take a regenerated text). Drafts live in the database
//! only (nothing of them is cached); each change is one conditional UPDATE, so two tabs, a run and
//! a publishing worker can never undo each other's work: a change applies only to a draft in a
//! state it is meant for, and a person's edit or approval is never replaced by a run.
//!
//! Approving queues the post's publishing job in the same transaction (store::publish).

use serde::Serialize;

use crate::domain::{DraftId, PlatformId, UserId};
use crate::store::drafts::{self, Change, DraftRow};
use crate::store::{self, Db, StoreError};

/// Drafts on one page of the queue.
pub const PAGE_SIZE: i64 = 20;
/// Drafts one bulk action takes at most.
pub const MAX_BULK: usize = 200;

/// States a person can edit the text of (saved as pending).
const SAVE_FROM: [&str; 4] = [
    drafts::PENDING,
    drafts::REJECTED,
    drafts::GENERATION_FAILED,
    drafts::PUBLISH_FAILED,
];
const APPROVE_FROM: [&str; 4] = SAVE_FROM;
const REJECT_FROM: [&str; 4] = [
    drafts::PENDING,
    drafts::APPROVED,
    drafts::GENERATION_FAILED,
    drafts::PUBLISH_FAILED,
];
const RETRY_FROM: [&str; 1] = [drafts::PUBLISH_FAILED];
/// States a new text may be drafted in (the person asked for it).
pub const REGENERATE_FROM: [&str; 4] = SAVE_FROM;

/// What a person can do with a draft in `state`, in the order the page shows the buttons.
pub fn actions(state: &str) -> Vec<&'static str> {
    let mut list = Vec::new();
    if SAVE_FROM.contains(&state) {
        list.push("save");
    }
    if APPROVE_FROM.contains(&state) && state != drafts::PUBLISH_FAILED {
        list.push("approve");
    }
    if RETRY_FROM.contains(&state) {
        list.push("retry");
    }
    if REGENERATE_FROM.contains(&state) {
        list.push("regenerate");
    }
    if REJECT_FROM.contains(&state) {
        list.push("reject");
    }
    list
}

/// Why a person's action did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No such draft of theirs.
    NotFound,
    /// The text broke a rule (the field is alt_text).
    Invalid(String),
    /// The draft is not in a state the action applies to: why, in words.
    State(String),
}

/// The words for a draft's state.
pub fn state_text(state: &str) -> &'static str {
    match state {
        drafts::PENDING => "Waiting for your review",
        drafts::APPROVED => "Approved: waiting to be published",
        drafts::PUBLISHING => "Being published",
        drafts::PUBLISHED => "Published",
        drafts::REJECTED => "Rejected",
        drafts::GENERATION_FAILED => "Could not be described",
        drafts::PUBLISH_FAILED => "Publishing failed",
        drafts::ALREADY_DESCRIBED => "Described on the instance meanwhile",
        _ => "Unknown",
    }
}

/// Why an action does not apply to a draft in `state`.
pub fn not_now(state: &str, action: &str) -> String {
    match state {
        drafts::PUBLISHED => "This description is already published; it can no longer be changed here.".into(),
        drafts::PUBLISHING => "This description is being published right now.".into(),
        drafts::ALREADY_DESCRIBED => "This image got a description on your instance meanwhile, and fedialt leaves it as it is.".into(),
        drafts::APPROVED => "This draft is approved and waiting to be published. Reject it first if you want to change it.".into(),
        _ => format!("A draft that is “{}” cannot be {action}.", state_text(state).to_lowercase()),
    }
}

/// A person's text for a draft, checked: line ends made plain, not empty, no invisible control
/// characters, at most `limit` characters (Unicode scalar values, as Mastodon counts).
pub fn checked_text(text: &str, limit: usize) -> Result<String, String> {
    let text = text.replace("\r\n", "\n").replace('\t', " ");
    let text = text.trim();
    if text.is_empty() {
        return Err("The description (alt_text) must not be empty.".into());
    }
    if text
        .chars()
        .any(|c| c != '\n' && crate::domain::is_hidden_control(c))
    {
        return Err(
            "The description (alt_text) must not contain invisible control characters (such as \
             direction overrides)."
                .into(),
        );
    }
    let length = text.chars().count();
    if length > limit {
        return Err(format!(
            "The description (alt_text) has {length} characters; the limit of this account's \
             instance is {limit}. Shorten it by {}.",
            length - limit
        ));
    }
    Ok(text.to_owned())
}

/// A page of the queue.
#[derive(Serialize)]
pub struct Queue {
    pub drafts: Vec<DraftRow>,
    /// Drafts in each state (every state listed, 0 where none).
    pub counts: Vec<(&'static str, i64)>,
    pub total: i64,
    pub page: i64,
    pub pages: i64,
}

#[derive(Clone)]
pub struct ReviewService {
    db: Db,
    wake: std::sync::Arc<tokio::sync::Notify>,
    waiting: super::waiting::Waiting,
    pub regenerating: Regenerating,
}

type Acted = Result<Result<DraftRow, Refused>, StoreError>;

/// What the page says of one draft in a bulk action.
#[derive(Debug, Default)]
pub struct BulkEdit {
    pub text: Option<String>,
    pub version: Option<i64>,
}

/// The people whose regenerate is under way: one at a time each, since it holds a model slot the
/// runs share.
#[derive(Clone, Default)]
pub struct Regenerating(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<i64>>>);

/// Held while a person's regenerate runs.
pub struct RegenerateTurn {
    set: Regenerating,
    user: i64,
}

impl Drop for RegenerateTurn {
    fn drop(&mut self) {
        self.set
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.user);
    }
}

impl Regenerating {
    /// The person's turn, or None while another of theirs is under way.
    pub fn turn(&self, user: UserId) -> Option<RegenerateTurn> {
        let fresh = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.get());
        fresh.then(|| RegenerateTurn {
            set: self.clone(),
            user: user.get(),
        })
    }
}

impl ReviewService {
    /// `runs` lends its wake-up (publishing is the worker's) and the navigation's count.
    pub fn new(db: Db, runs: &super::runs::RunService) -> ReviewService {
        ReviewService {
            db,
            wake: runs.wake.clone(),
            waiting: runs.waiting.clone(),
            regenerating: Regenerating::default(),
        }
    }

    /// A page of a connection's drafts, newest first, in one state or all.
    pub async fn queue(
        &self,
        platform: PlatformId,
        state: Option<&str>,
        page: i64,
    ) -> Result<Queue, StoreError> {
        let mut conn = self.db.conn().await?;
        let by_state = drafts::counts(&mut conn, platform.get()).await?;
        let count = |s: &str| {
            by_state
                .iter()
                .find(|(state, _)| state == s)
                .map_or(0, |(_, n)| *n)
        };
        let counts: Vec<(&'static str, i64)> =
            drafts::STATES.iter().map(|s| (*s, count(s))).collect();
        let total = match state {
            Some(s) => count(s),
            None => counts.iter().map(|(_, n)| n).sum(),
        };
        let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
        let page = page.clamp(1, pages);
        let drafts = drafts::page(
            &mut conn,
            platform.get(),
            state,
            PAGE_SIZE,
            (page - 1) * PAGE_SIZE,
        )
        .await?;
        Ok(Queue {
            drafts,
            counts,
            total,
            page,
            pages,
        })
    }

    /// One of the person's drafts, and its connection's description limit.
    pub async fn draft(
        &self,
        user: UserId,
        id: DraftId,
    ) -> Result<Option<(DraftRow, usize)>, StoreError> {
        let mut conn = self.db.conn().await?;
        let Some(draft) = drafts::owned(&mut conn, id.get(), user.get()).await? else {
            return Ok(None);
        };
        let limit = store::platforms::owned(&mut conn, draft.platform_id, user.get())
            .await?
            .map_or(1500, |p| {
                usize::try_from(p.description_limit.max(1)).unwrap_or(1500)
            });
        Ok(Some((draft, limit)))
    }

    /// The person's drafts among `ids`; None when any is not theirs.
    pub async fn drafts(
        &self,
        user: UserId,
        ids: &[i64],
    ) -> Result<Option<Vec<DraftRow>>, StoreError> {
        let mut conn = self.db.conn().await?;
        let found = drafts::owned_many(&mut conn, ids, user.get()).await?;
        let mut wanted: Vec<i64> = ids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        Ok((found.len() == wanted.len()).then_some(found))
    }

    async fn apply(
        &self,
        user: UserId,
        draft: &DraftRow,
        change: Change<'_>,
        verb: &str,
        publish: bool,
    ) -> Acted {
        let mut conn = self.db.conn().await?;
        let changed = crate::write_tx!(conn, {
            let row = drafts::change(&mut conn, draft.id, user.get(), &change).await?;
            if let (Some(row), true) = (&row, publish) {
                store::publish::request(&mut conn, user.get(), row.platform_id, &row.status_id)
                    .await?;
            }
            Ok(row)
        })?;
        drop(conn);
        match changed {
            Some(row) => {
                self.waiting.changed(user).await;
                if publish {
                    self.wake.notify_one();
                    crate::jobs::signal_new_job(&self.db).await;
                }
                Ok(Ok(row))
            }
            None => {
                // Say why from the draft as it is now.
                let now = self.draft(user, DraftId(draft.id)).await?;
                Ok(Err(match now {
                    None => Refused::NotFound,
                    Some((now, _))
                        if now.version != change.version.unwrap_or(draft.version)
                            && change.from.contains(&now.state.as_str()) =>
                    {
                        Refused::State(
                            "The draft changed while this was sent; look at it again and repeat."
                                .into(),
                        )
                    }
                    Some((now, _)) => Refused::State(not_now(&now.state, verb)),
                }))
            }
        }
    }

    /// Keeps a person's edit (the draft goes back to waiting for review).
    pub async fn save(&self, user: UserId, id: DraftId, text: &str) -> Acted {
        let Some((draft, limit)) = self.draft(user, id).await? else {
            return Ok(Err(Refused::NotFound));
        };
        let text = match checked_text(text, limit) {
            Ok(text) => text,
            Err(message) => return Ok(Err(Refused::Invalid(message))),
        };
        let edited = text != draft.alt_text || draft.edited;
        let change = Change {
            from: &SAVE_FROM,
            version: None,
            state: drafts::PENDING,
            alt_text: Some(&text),
            edited: Some(edited),
            model: None,
        };
        self.apply(user, &draft, change, "edited", false).await
    }

    /// Approves a draft, with the person's text when they give one, and queues its post for
    /// publishing.
    pub async fn approve(&self, user: UserId, id: DraftId, text: Option<&str>) -> Acted {
        let Some((draft, limit)) = self.draft(user, id).await? else {
            return Ok(Err(Refused::NotFound));
        };
        self.approve_draft(user, &draft, limit, text, None).await
    }

    /// `seen`: the version of the draft the person looked at, when the caller knows it (the
    /// page's bulk form sends it): the approval then applies only to that version.
    async fn approve_draft(
        &self,
        user: UserId,
        draft: &DraftRow,
        limit: usize,
        text: Option<&str>,
        seen: Option<i64>,
    ) -> Acted {
        if !APPROVE_FROM.contains(&draft.state.as_str()) {
            return Ok(Err(Refused::State(not_now(&draft.state, "approved"))));
        }
        let given = text.is_some();
        let text = match checked_text(text.unwrap_or(&draft.alt_text), limit) {
            Ok(text) => text,
            Err(_) if !given && draft.alt_text.trim().is_empty() => {
                return Ok(Err(Refused::Invalid(
                    "This draft has no description to approve: write one (alt_text) or \
                     regenerate it first."
                        .into(),
                )))
            }
            Err(message) => return Ok(Err(Refused::Invalid(message))),
        };
        let edited = text != draft.alt_text || draft.edited;
        let change = Change {
            from: &APPROVE_FROM,
            // Approving the text as it stands: only the version the person saw (when the page
            // said which), else the one read just now, so that a change landing in between
            // (a regenerate, a run) is never approved unseen.
            version: if given {
                seen
            } else {
                Some(seen.unwrap_or(draft.version))
            },
            state: drafts::APPROVED,
            alt_text: Some(&text),
            edited: Some(edited),
            model: None,
        };
        self.apply(user, draft, change, "approved", true).await
    }

    pub async fn reject(&self, user: UserId, id: DraftId) -> Acted {
        let Some((draft, _)) = self.draft(user, id).await? else {
            return Ok(Err(Refused::NotFound));
        };
        self.reject_draft(user, &draft).await
    }

    async fn reject_draft(&self, user: UserId, draft: &DraftRow) -> Acted {
        let change = Change {
            from: &REJECT_FROM,
            version: None,
            state: drafts::REJECTED,
            alt_text: None,
            edited: None,
            model: None,
        };
        self.apply(user, draft, change, "rejected", false).await
    }

    /// Sends a draft whose publishing failed again, with the person's text when they give one
    /// (the fix a refusal asked for is often in the text).
    pub async fn retry(&self, user: UserId, id: DraftId, text: Option<&str>) -> Acted {
        let Some((draft, limit)) = self.draft(user, id).await? else {
            return Ok(Err(Refused::NotFound));
        };
        if !RETRY_FROM.contains(&draft.state.as_str()) {
            return Ok(Err(Refused::State(not_now(
                &draft.state,
                "published again",
            ))));
        }
        self.approve_draft(user, &draft, limit, text, None).await
    }

    /// A regenerated text, taken only if the draft is as it was when regenerating began.
    pub async fn regenerated(
        &self,
        user: UserId,
        draft: &DraftRow,
        text: &str,
        model: &str,
    ) -> Acted {
        let change = Change {
            from: &REGENERATE_FROM,
            version: Some(draft.version),
            state: drafts::PENDING,
            alt_text: Some(text),
            edited: Some(false),
            model: Some((model, crate::captioning::prompt::VERSION)),
        };
        self.apply(user, draft, change, "regenerated", false).await
    }

    /// Approves or rejects several drafts (all the person's, or nothing happens): each result.
    /// `edits` carries, per draft id, the text typed on the page (when it differs from the
    /// saved one) and the version the page showed.
    pub async fn bulk(
        &self,
        user: UserId,
        drafts: &[DraftRow],
        approve: bool,
        edits: &std::collections::HashMap<i64, BulkEdit>,
    ) -> Result<Vec<(DraftRow, Result<DraftRow, Refused>)>, StoreError> {
        let mut limits = std::collections::HashMap::new();
        let mut results = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let result = if approve {
                let limit = match limits.get(&draft.platform_id) {
                    Some(limit) => *limit,
                    None => {
                        let limit = self
                            .draft(user, DraftId(draft.id))
                            .await?
                            .map_or(1500, |(_, l)| l);
                        limits.insert(draft.platform_id, limit);
                        limit
                    }
                };
                let edit = edits.get(&draft.id);
                let text = edit.and_then(|e| e.text.as_deref());
                let seen = edit.and_then(|e| e.version);
                self.approve_draft(user, draft, limit, text, seen).await?
            } else {
                self.reject_draft(user, draft).await?
            };
            results.push((draft.clone(), result));
        }
        Ok(results)
    }

    /// The person's drafts as they are now (the page polls this while some are going out).
    pub async fn states(&self, user: UserId, ids: &[i64]) -> Result<Vec<DraftRow>, StoreError> {
        let mut conn = self.db.conn().await?;
        drafts::owned_many(&mut conn, ids, user.get()).await
    }

    /// What the person published, newest first.
    pub async fn history(&self, user: UserId, page: i64) -> Result<Vec<DraftRow>, StoreError> {
        let mut conn = self.db.conn().await?;
        drafts::published(
            &mut conn,
            user.get(),
            PAGE_SIZE + 1,
            (page.max(1) - 1) * PAGE_SIZE,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_persons_text_is_checked_by_the_rules() {
        assert_eq!(
            checked_text("  A fox\r\nin snow ", 100).unwrap(),
            "A fox\nin snow"
        );
        assert!(checked_text("   ", 100)
            .unwrap_err()
            .contains("must not be empty"));
        assert!(checked_text("a\u{202e}b", 100)
            .unwrap_err()
            .contains("control"));
        assert_eq!(checked_text("ééé", 3).unwrap(), "ééé");
        let over = checked_text("éééé", 3).unwrap_err();
        assert!(
            over.contains("has 4 characters") && over.contains("is 3"),
            "{over}"
        );
        // A zero-width joiner is part of an emoji, not a control.
        assert!(checked_text("👩\u{200d}💻", 10).is_ok());
    }

    #[test]
    fn each_state_offers_what_applies() {
        assert_eq!(
            actions("pending"),
            ["save", "approve", "regenerate", "reject"]
        );
        assert_eq!(actions("approved"), ["reject"]);
        assert_eq!(
            actions("publish_failed"),
            ["save", "retry", "regenerate", "reject"]
        );
        assert!(actions("published").is_empty());
        assert!(actions("publishing").is_empty());
        assert!(actions("already_described").is_empty());
    }
}
