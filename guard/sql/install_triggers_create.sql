-- The three statement-level triggers of one watched table (a trigger with transition tables may have
-- only one event). Composed by guard/install.py; {table} and {function} are quoted identifiers.
DROP TRIGGER IF EXISTS guard_capture_insert ON {table};
DROP TRIGGER IF EXISTS guard_capture_update ON {table};
DROP TRIGGER IF EXISTS guard_capture_delete ON {table};
CREATE TRIGGER guard_capture_insert AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS guard_new FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TRIGGER guard_capture_update AFTER UPDATE ON {table}
    REFERENCING OLD TABLE AS guard_old NEW TABLE AS guard_new FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE TRIGGER guard_capture_delete AFTER DELETE ON {table}
    REFERENCING OLD TABLE AS guard_old FOR EACH STATEMENT EXECUTE FUNCTION {function}();
