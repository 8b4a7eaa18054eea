-- The three row-level triggers of one watched table. Composed by guard/install.py; {table} and
-- {function} are quoted identifiers, {relevant_old}/{relevant_new} the columns the rules read (the
-- key included), so an UPDATE that changes none of them never calls the function.
DROP TRIGGER IF EXISTS guard_capture_insert ON {table};
DROP TRIGGER IF EXISTS guard_capture_update ON {table};
DROP TRIGGER IF EXISTS guard_capture_delete ON {table};
CREATE TRIGGER guard_capture_insert AFTER INSERT ON {table}
    FOR EACH ROW EXECUTE FUNCTION {function}();
CREATE TRIGGER guard_capture_update AFTER UPDATE ON {table}
    FOR EACH ROW WHEN (({relevant_old}) IS DISTINCT FROM ({relevant_new})) EXECUTE FUNCTION {function}();
CREATE TRIGGER guard_capture_delete AFTER DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {function}();
