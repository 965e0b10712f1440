-- A share refresh of a threshold key in progress: the nodes hold the new
-- shares staged until the server, having recorded the new public package
-- (in backend_ref), commits them; the session to commit stays here until
-- every node has, so an interrupted refresh is finished, never forgotten.
ALTER TABLE keys ADD COLUMN refresh_session TEXT;
