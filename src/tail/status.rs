//! What the tailer shows of its files to `tailship status` (`status::Board`), published at
//! every reconcile: the open files, the parked ones, and the paths it cannot open.

use super::Tailer;
use crate::status::{FileState, FileView};

impl Tailer {
    pub(super) fn publish_status(&self) {
        let mut views: Vec<FileView> = self
            .files
            .values()
            .map(|f| FileView {
                uid: f.uid,
                path: f.path.display().to_string(),
                source: f.source,
                state: if f.attached {
                    FileState::Reading
                } else {
                    FileState::RotatedDraining
                },
                reason: None,
                size: Some(f.size.max(f.read_offset)),
                read_offset: Some(f.read_offset),
                last_read_ms: None,
                rate: None,
            })
            .collect();
        views.extend(self.parking.parked.values().map(|p| FileView {
            uid: p.uid,
            path: p.path.display().to_string(),
            source: p.source,
            state: FileState::Parked,
            reason: None,
            size: std::fs::metadata(&p.path).ok().map(|m| m.len()),
            read_offset: Some(p.read_offset),
            last_read_ms: None,
            rate: None,
        }));
        for (path, why) in &self.failed {
            let text = path.display().to_string();
            let source = self.sources.iter().position(|s| s.include_set.is_match(&text));
            views.push(FileView {
                // Never read, never checkpointed: no checkpoint entry has uid 0.
                uid: 0,
                path: text,
                source: source.unwrap_or(0),
                state: FileState::CannotOpen,
                reason: Some(why.clone()),
                size: None,
                read_offset: None,
                last_read_ms: None,
                rate: None,
            });
        }
        views.sort_by(|a, b| (a.source, &a.path).cmp(&(b.source, &b.path)));
        self.metrics.board.publish(views);
    }
}
