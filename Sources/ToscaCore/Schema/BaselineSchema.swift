/// The schema TOSCA v0.9.12's Python application creates (SQLAlchemy), verbatim: the
/// baseline every migration starts from (ARCHITECTURE §3, D15). A test compares it byte for
/// byte with `Tests/Fixtures/tosca-v0.9.12-schema.sql`.
public let toscaBaselineSchemaSQL = #"""
CREATE TABLE tech_users (
	tech_id INTEGER NOT NULL, 
	username VARCHAR(50) NOT NULL, 
	full_name VARCHAR(100) NOT NULL, 
	role VARCHAR(20) NOT NULL, 
	created_date DATETIME NOT NULL, 
	last_login DATETIME, 
	is_active BOOLEAN NOT NULL, 
	notes TEXT, 
	PRIMARY KEY (tech_id)
);
CREATE INDEX ix_tech_users_is_active ON tech_users (is_active);
CREATE UNIQUE INDEX ix_tech_users_username ON tech_users (username);
CREATE TABLE subjects (
	subject_id INTEGER NOT NULL, 
	subject_code VARCHAR(20) NOT NULL, 
	date_of_birth DATETIME, 
	gender VARCHAR(10), 
	created_date DATETIME NOT NULL, 
	created_by_tech_id INTEGER, 
	last_modified_date DATETIME, 
	notes TEXT, 
	is_active BOOLEAN NOT NULL, 
	PRIMARY KEY (subject_id), 
	FOREIGN KEY(created_by_tech_id) REFERENCES tech_users (tech_id)
);
CREATE INDEX ix_subjects_created_date ON subjects (created_date);
CREATE INDEX ix_subjects_is_active ON subjects (is_active);
CREATE UNIQUE INDEX ix_subjects_subject_code ON subjects (subject_code);
CREATE TABLE protocols (
	protocol_id INTEGER NOT NULL, 
	protocol_name VARCHAR(100) NOT NULL, 
	description TEXT, 
	protocol_type VARCHAR(20) NOT NULL, 
	protocol_data TEXT NOT NULL, 
	created_date DATETIME NOT NULL, 
	created_by_tech_id INTEGER, 
	last_modified_date DATETIME, 
	last_used_date DATETIME, 
	usage_count INTEGER NOT NULL, 
	is_active BOOLEAN NOT NULL, 
	PRIMARY KEY (protocol_id), 
	FOREIGN KEY(created_by_tech_id) REFERENCES tech_users (tech_id)
);
CREATE INDEX ix_protocols_protocol_type ON protocols (protocol_type);
CREATE INDEX ix_protocols_is_active ON protocols (is_active);
CREATE UNIQUE INDEX ix_protocols_protocol_name ON protocols (protocol_name);
CREATE TABLE sessions (
	session_id INTEGER NOT NULL, 
	subject_id INTEGER NOT NULL, 
	tech_id INTEGER NOT NULL, 
	protocol_id INTEGER, 
	start_time DATETIME NOT NULL, 
	end_time DATETIME, 
	duration_seconds INTEGER, 
	status VARCHAR(20) NOT NULL, 
	abort_reason TEXT, 
	treatment_site VARCHAR(100), 
	treatment_notes TEXT, 
	protocol_name VARCHAR(100), 
	protocol_data_snapshot TEXT, 
	session_folder_path VARCHAR(500), 
	video_path VARCHAR(500), 
	total_laser_on_time_seconds FLOAT, 
	avg_power_watts FLOAT, 
	max_power_watts FLOAT, 
	total_energy_joules FLOAT, 
	post_treatment_notes TEXT, 
	created_date DATETIME NOT NULL, 
	PRIMARY KEY (session_id), 
	FOREIGN KEY(subject_id) REFERENCES subjects (subject_id), 
	FOREIGN KEY(tech_id) REFERENCES tech_users (tech_id), 
	FOREIGN KEY(protocol_id) REFERENCES protocols (protocol_id)
);
CREATE INDEX ix_sessions_tech_id ON sessions (tech_id);
CREATE INDEX ix_sessions_start_time ON sessions (start_time);
CREATE INDEX ix_sessions_status ON sessions (status);
CREATE INDEX ix_sessions_subject_id ON sessions (subject_id);
CREATE TABLE safety_log (
	log_id INTEGER NOT NULL, 
	timestamp DATETIME NOT NULL, 
	session_id INTEGER, 
	tech_id INTEGER, 
	event_type VARCHAR(50) NOT NULL, 
	severity VARCHAR(20) NOT NULL, 
	description TEXT NOT NULL, 
	system_state VARCHAR(20), 
	laser_state VARCHAR(20), 
	footpedal_state BOOLEAN, 
	smoothing_device_state BOOLEAN, 
	photodiode_voltage_v FLOAT, 
	action_taken TEXT, 
	details TEXT, 
	PRIMARY KEY (log_id), 
	FOREIGN KEY(session_id) REFERENCES sessions (session_id), 
	FOREIGN KEY(tech_id) REFERENCES tech_users (tech_id)
);
CREATE INDEX ix_safety_log_event_type ON safety_log (event_type);
CREATE INDEX ix_safety_log_session_id ON safety_log (session_id);
CREATE INDEX ix_safety_log_severity ON safety_log (severity);
CREATE INDEX ix_safety_log_timestamp ON safety_log (timestamp);
"""#
