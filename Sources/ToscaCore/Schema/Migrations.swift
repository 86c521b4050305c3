/// One versioned schema change (ARCHITECTURE D15).
///
/// A migration is a list of steps: SQL run as written, or a named piece of code (the
/// safety-log back-fill) whose name and revision stand in the checksum, so that editing
/// either is detected once the migration has been applied.
public struct Migration: Sendable {
    /// One step of a migration.
    public enum Step: Sendable {
        case sql(String)
        /// Code run inside the migration's transaction; `revision` must change whenever the
        /// code's effect changes.
        case code(name: String, revision: Int, run: @Sendable (Database) throws -> Void)
    }

    /// Sortable identifier, `NNNN_name`; the number is the schema version it brings.
    public let id: String
    /// What it does, for `migrate status` and `plan`.
    public let summary: String
    /// Its steps, run in order.
    public let steps: [Step]
    /// Tables whose existing rows it changes on purpose (the chain back-fill adds values to
    /// `safety_log`); every other table that existed before keeps identical rows.
    public let changesRowsOf: [String]

    public init(id: String, summary: String, steps: [Step], changesRowsOf: [String] = []) {
        self.id = id
        self.summary = summary
        self.steps = steps
        self.changesRowsOf = changesRowsOf
    }

    /// The schema version it brings (the leading number of the id).
    public var version: Int { Int(id.prefix(while: { $0.isNumber })) ?? 0 }

    /// What `checksum` is computed over: the SQL text, and `code:<name>:<revision>` for code.
    public var checksumInput: String {
        steps.map {
            switch $0 {
            case .sql(let s): return s
            case .code(let name, let revision, _): return "code:\(name):\(revision)"
            }
        }.joined(separator: "\n--\n")
    }

    /// SHA-256 (hex) of ``checksumInput``, as recorded in `schema_migrations`.
    public var checksum: String { sha256Hex(Array(checksumInput.utf8)) }

    /// The SQL `up` would run, code steps shown as comments.
    public var planText: String {
        steps.map {
            switch $0 {
            case .sql(let s): return s.trimmingCharacters(in: .whitespacesAndNewlines)
            case .code(let name, let revision, _): return "-- code step \(name) (revision \(revision))"
            }
        }.joined(separator: "\n")
    }
}

import Foundation

/// SQLite's `application_id` for TOSCA databases made or adopted by this tool: "TOSC".
public let toscaApplicationID: Int32 = 0x544F_5343

/// The migrations of this build, in order. Never edit one that has shipped: add a new one.
public let toscaMigrations: [Migration] = [
    Migration(id: "0001_schema_migrations", summary: "record applied migrations", steps: [.sql("""
        CREATE TABLE schema_migrations (
            migration_id TEXT NOT NULL PRIMARY KEY,
            checksum TEXT NOT NULL,
            applied_at TEXT NOT NULL
        );
        """)]),
    Migration(id: "0002_system_config", summary: "system_config; record the UTC offset of legacy local-time rows", steps: [.sql("""
        CREATE TABLE system_config (
            config_key VARCHAR(100) NOT NULL PRIMARY KEY,
            config_value TEXT NOT NULL,
            config_type VARCHAR(20) NOT NULL,
            description TEXT,
            last_modified DATETIME DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'),
            modified_by_tech_id INTEGER REFERENCES tech_users (tech_id)
        );
        INSERT INTO system_config (config_key, config_value, config_type, description)
        VALUES ('legacy_datetime_utc_offset',
                CAST(CAST(strftime('%s', 'now', 'localtime') AS INTEGER) - CAST(strftime('%s', 'now') AS INTEGER) AS TEXT),
                'integer_seconds',
                'Seconds east of UTC of this machine when the schema was adopted; TOSCA v0.9.12 rows hold local time, rows written since hold UTC');
        """)]),
    Migration(id: "0003_treatment_events", summary: "treatment_events, append-only", steps: [.sql("""
        CREATE TABLE treatment_events (
            event_id INTEGER NOT NULL PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions (session_id),
            timestamp DATETIME NOT NULL,
            time_offset_ms INTEGER NOT NULL,
            event_type VARCHAR(50) NOT NULL,
            laser_power_commanded_watts FLOAT,
            laser_power_actual_watts FLOAT,
            ring_size_mm FLOAT,
            actuator_position_um FLOAT,
            photodiode_voltage_v FLOAT,
            footpedal_state BOOLEAN,
            smoothing_device_state BOOLEAN,
            interlock_status TEXT,
            image_path VARCHAR(500),
            video_timestamp_ms INTEGER,
            event_details TEXT
        );
        CREATE INDEX ix_treatment_events_session_id ON treatment_events (session_id);
        CREATE INDEX ix_treatment_events_timestamp ON treatment_events (timestamp);
        CREATE INDEX ix_treatment_events_event_type ON treatment_events (event_type);
        CREATE INDEX ix_treatment_events_session_offset ON treatment_events (session_id, time_offset_ms);
        CREATE TRIGGER treatment_events_no_update BEFORE UPDATE ON treatment_events
        BEGIN SELECT RAISE(ABORT, 'treatment_events is append-only'); END;
        CREATE TRIGGER treatment_events_no_delete BEFORE DELETE ON treatment_events
        BEGIN SELECT RAISE(ABORT, 'treatment_events is append-only'); END;
        """)]),
    Migration(id: "0004_session_recordings", summary: "session_recordings (video, snapshots, focus stacks)", steps: [.sql("""
        CREATE TABLE session_recordings (
            recording_id INTEGER NOT NULL PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions (session_id),
            recording_type VARCHAR(20) NOT NULL CHECK (recording_type IN ('video', 'snapshot', 'focus_stack')),
            file_path VARCHAR(500) NOT NULL,
            file_size_bytes INTEGER,
            duration_seconds FLOAT,
            timestamp DATETIME NOT NULL,
            frame_count INTEGER,
            resolution VARCHAR(20),
            notes TEXT
        );
        CREATE INDEX ix_session_recordings_session_id ON session_recordings (session_id);
        """)]),
    Migration(id: "0005_calibrations", summary: "calibrations", steps: [.sql("""
        CREATE TABLE calibrations (
            calibration_id INTEGER NOT NULL PRIMARY KEY,
            calibration_date DATETIME NOT NULL,
            tech_id INTEGER NOT NULL REFERENCES tech_users (tech_id),
            device_type VARCHAR(50) NOT NULL,
            device_serial_number VARCHAR(100),
            calibration_type VARCHAR(50) NOT NULL,
            calibration_data TEXT NOT NULL,
            validation_data TEXT,
            is_active BOOLEAN NOT NULL DEFAULT 1,
            notes TEXT
        );
        CREATE INDEX ix_calibrations_device_type ON calibrations (device_type);
        CREATE INDEX ix_calibrations_is_active ON calibrations (is_active);
        """)]),
    Migration(id: "0006_safety_log_chain", summary: "safety-log hash chain (seq, prev_hash, row_hash), back-filled; append-only",
              steps: [
                .sql("""
                    ALTER TABLE safety_log ADD COLUMN seq INTEGER;
                    ALTER TABLE safety_log ADD COLUMN prev_hash BLOB;
                    ALTER TABLE safety_log ADD COLUMN row_hash BLOB;
                    """),
                .code(name: "backfill_safety_log_chain", revision: 1, run: { try SafetyChain.backfill($0) }),
                .sql("""
                    CREATE UNIQUE INDEX ix_safety_log_seq ON safety_log (seq);
                    CREATE TRIGGER safety_log_no_update BEFORE UPDATE ON safety_log
                    BEGIN SELECT RAISE(ABORT, 'safety_log is append-only'); END;
                    CREATE TRIGGER safety_log_no_delete BEFORE DELETE ON safety_log
                    BEGIN SELECT RAISE(ABORT, 'safety_log is append-only'); END;
                    CREATE TRIGGER safety_log_chain_insert BEFORE INSERT ON safety_log
                    WHEN NEW.seq IS NOT COALESCE((SELECT MAX(seq) FROM safety_log), 0) + 1
                      OR NEW.prev_hash IS NOT COALESCE((SELECT row_hash FROM safety_log WHERE seq = NEW.seq - 1), zeroblob(32))
                      OR typeof(NEW.row_hash) IS NOT 'blob' OR length(NEW.row_hash) IS NOT 32
                    BEGIN SELECT RAISE(ABORT, 'safety_log rows must extend the hash chain (seq, prev_hash, row_hash)'); END;
                    """),
              ],
              changesRowsOf: ["safety_log"]),
    // A safety event must never be refused for lack of a hash: TOSCA v0.9.12's own app
    // (rolled back, or still installed) and a technician's sqlite3 insert rows without the
    // chain columns. Such a row is kept unsealed (seq, prev_hash, row_hash all NULL); the
    // recorder or the next maintenance run seals it in place, in arrival order (log_id).
    // The only UPDATE allowed is that sealing: NULL chain columns to values that extend the
    // chain, every other column unchanged, no older row still unsealed. A row whose chain
    // columns are given but do not extend the chain is still refused (a wrong row_hash,
    // which SQL cannot compute, is what verification reports); DELETE stays refused. An
    // INSERT OR REPLACE over an existing row (which deletes it without firing the delete
    // trigger) is refused in both append-only tables, and so is an unsealed row posing as
    // a session seal, which only the recorder and tosca-maint write, chained.
    Migration(id: "0007_safety_log_unsealed_rows", summary: "safety-log rows from any writer kept unsealed until sealed in place", steps: [.sql("""
        DROP TRIGGER safety_log_chain_insert;
        DROP TRIGGER safety_log_no_update;
        CREATE TRIGGER safety_log_chain_insert BEFORE INSERT ON safety_log
        WHEN NOT (NEW.seq IS NULL AND NEW.prev_hash IS NULL AND NEW.row_hash IS NULL)
          AND (NEW.seq IS NOT COALESCE((SELECT MAX(seq) FROM safety_log), 0) + 1
            OR NEW.prev_hash IS NOT COALESCE((SELECT row_hash FROM safety_log WHERE seq = NEW.seq - 1), zeroblob(32))
            OR typeof(NEW.row_hash) IS NOT 'blob' OR length(NEW.row_hash) IS NOT 32)
        BEGIN SELECT RAISE(ABORT, 'safety_log rows must extend the hash chain (seq, prev_hash, row_hash), or leave all three NULL'); END;
        CREATE TRIGGER safety_log_no_replace BEFORE INSERT ON safety_log
        WHEN EXISTS (SELECT 1 FROM safety_log WHERE log_id = NEW.log_id)
          OR (NEW.seq IS NULL AND NEW.event_type = 'session_sealed')
        BEGIN SELECT RAISE(ABORT, 'safety_log is append-only'); END;
        CREATE TRIGGER treatment_events_no_replace BEFORE INSERT ON treatment_events
        WHEN EXISTS (SELECT 1 FROM treatment_events WHERE event_id = NEW.event_id)
        BEGIN SELECT RAISE(ABORT, 'treatment_events is append-only'); END;
        CREATE TRIGGER safety_log_no_update BEFORE UPDATE ON safety_log
        WHEN NOT (OLD.seq IS NULL AND OLD.prev_hash IS NULL AND OLD.row_hash IS NULL
          AND NEW.log_id IS OLD.log_id AND NEW.timestamp IS OLD.timestamp AND NEW.session_id IS OLD.session_id AND NEW.tech_id IS OLD.tech_id AND NEW.event_type IS OLD.event_type AND NEW.severity IS OLD.severity AND NEW.description IS OLD.description AND NEW.system_state IS OLD.system_state AND NEW.laser_state IS OLD.laser_state AND NEW.footpedal_state IS OLD.footpedal_state AND NEW.smoothing_device_state IS OLD.smoothing_device_state AND NEW.photodiode_voltage_v IS OLD.photodiode_voltage_v AND NEW.action_taken IS OLD.action_taken AND NEW.details IS OLD.details
          AND NEW.seq IS COALESCE((SELECT MAX(seq) FROM safety_log), 0) + 1
          AND NEW.prev_hash IS COALESCE((SELECT row_hash FROM safety_log WHERE seq = NEW.seq - 1), zeroblob(32))
          AND typeof(NEW.row_hash) IS 'blob' AND length(NEW.row_hash) IS 32
          AND NOT EXISTS (SELECT 1 FROM safety_log WHERE seq IS NULL AND prev_hash IS NULL AND row_hash IS NULL AND log_id < OLD.log_id))
        BEGIN SELECT RAISE(ABORT, 'safety_log is append-only'); END;
        """)]),
]
