//! The crash point armed from `STRONGROOM_CRASH_AT` (feature `test-hooks`,
//! tests only): the process kills itself when it reaches that point.

use std::sync::OnceLock;

/// What kills the process, given the point reached.
type Kill = fn(&'static str) -> !;

/// The point armed, and what kills the process there.
static ARMED: OnceLock<(&'static str, Kill)> = OnceLock::new();

/// Arms the point `STRONGROOM_CRASH_AT` names, if set: at it, `kill` is
/// called. Returns the point armed; an unknown label, or a second call, is
/// an error.
pub fn arm_from_env(kill: Kill) -> Result<Option<&'static str>, String> {
    let Ok(at) = std::env::var("STRONGROOM_CRASH_AT") else {
        return Ok(None);
    };
    let Some(&point) = super::POINTS.iter().find(|p| **p == at) else {
        return Err(format!(
            "STRONGROOM_CRASH_AT: one of {}",
            super::POINTS.join(", ")
        ));
    };
    ARMED
        .set((point, kill))
        .map_err(|_| "a crash point is already armed".to_owned())?;
    Ok(Some(point))
}

/// Kills the process if `label` is the point armed.
pub(super) fn fire(label: &'static str) {
    if let Some((point, kill)) = ARMED.get()
        && *point == label
    {
        kill(label);
    }
}
