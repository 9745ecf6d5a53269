//! The chrono half of `Layout`: a layout the fixed-width reader does not take (month names,
//! weekdays, offsets, one-digit fields) is read by chrono, then finished here. Two things
//! chrono alone gets wrong for logs are fixed on the way: a weekday that contradicts the date
//! makes chrono refuse the whole time, and a year-less time with an offset must have its year
//! placed on the writer's clock, not on UTC's.

use chrono::format::{Parsed as ChronoParsed, StrftimeItems};

use super::{infer_year, Layout, NANOS_PER_SEC};

impl Layout {
    #[cfg(test)]
    pub(super) fn parse_chrono(&self, s: &str, now_ns: i64) -> Option<i64> {
        self.parse_chrono_noting(s, now_ns).map(|(t, _)| t)
    }

    pub(super) fn parse_chrono_noting(&self, s: &str, now_ns: i64) -> Option<(i64, Option<&'static str>)> {
        let mut p = ChronoParsed::new();
        let mut extra_ns = 0;
        if self.millis_suffix {
            let rest = chrono::format::parse_and_remainder(&mut p, s, StrftimeItems::new(&self.format)).ok()?;
            if rest.is_empty() || rest.len() > 3 || !rest.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            extra_ns = rest.parse::<i64>().ok()? * 1_000_000;
        } else {
            chrono::format::parse(&mut p, s, StrftimeItems::new(&self.format)).ok()?;
        }
        self.finish(p, now_ns).map(|(t, warning)| (t + extra_ns, warning))
    }

    fn finish(&self, mut p: ChronoParsed, now_ns: i64) -> Option<(i64, Option<&'static str>)> {
        if !self.has_offset {
            p.set_offset(0).ok()?;
        }
        if self.has_year || p.timestamp().is_some() {
            return match p.to_datetime() {
                Ok(t) => Some((t.timestamp_nanos_opt()?, None)),
                Err(_) if p.weekday().is_some() => {
                    let t = without_weekday(&p)?.to_datetime().ok()?;
                    Some((t.timestamp_nanos_opt()?, Some(WRONG_WEEKDAY)))
                }
                Err(_) => None,
            };
        }
        // No year: read the rest as if in a leap year (so Feb 29 parses), then place it. The
        // weekday cannot be checked against the year 2000, so it is left out.
        let mut p = match p.weekday() {
            Some(_) => without_weekday(&p)?,
            None => p,
        };
        p.set_year(2000).ok()?;
        let t = p.to_datetime().ok()?;
        use chrono::{Datelike, Timelike};
        // The fields are the writer's local time (`%z` says how far from UTC): place the year
        // by the writer's "now", then take the offset off.
        let offset_ns = i64::from(t.offset().local_minus_utc()) * NANOS_PER_SEC;
        let local = infer_year(
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond(),
            now_ns.saturating_add(offset_ns),
        )?;
        Some((local.checked_sub(offset_ns)?, None))
    }
}

/// The warning of a date read without its contradicting weekday.
pub const WRONG_WEEKDAY: &str = "the weekday does not match the date; the date was used";

/// `p` without its weekday. Chrono refuses a date whose weekday disagrees with it; the date is
/// what a reader acts on (a wrong weekday is a typo or a buggy formatter). Only the fields a
/// strftime layout can set besides week-based dates are carried over.
fn without_weekday(p: &ChronoParsed) -> Option<ChronoParsed> {
    let mut q = ChronoParsed::new();
    let set = |v: Option<i64>, f: &mut dyn FnMut(i64) -> chrono::format::ParseResult<()>| match v {
        Some(v) => f(v).ok(),
        None => Some(()),
    };
    set(p.year().map(i64::from), &mut |v| q.set_year(v))?;
    set(p.year_div_100().map(i64::from), &mut |v| q.set_year_div_100(v))?;
    set(p.year_mod_100().map(i64::from), &mut |v| q.set_year_mod_100(v))?;
    set(p.month().map(i64::from), &mut |v| q.set_month(v))?;
    set(p.day().map(i64::from), &mut |v| q.set_day(v))?;
    set(p.ordinal().map(i64::from), &mut |v| q.set_ordinal(v))?;
    if let (Some(div), Some(rem)) = (p.hour_div_12(), p.hour_mod_12()) {
        q.set_hour(i64::from(div * 12 + rem)).ok()?;
    }
    set(p.minute().map(i64::from), &mut |v| q.set_minute(v))?;
    set(p.second().map(i64::from), &mut |v| q.set_second(v))?;
    set(p.nanosecond().map(i64::from), &mut |v| q.set_nanosecond(v))?;
    set(p.offset().map(i64::from), &mut |v| q.set_offset(v))?;
    Some(q)
}
