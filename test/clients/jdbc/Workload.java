// The driver workload (test/clients/driver-workload.ts) for pgjdbc, run as a single-file source
// program: java -cp postgresql.jar Workload.java HOST PORT. Prints one JSON report on stdout.
import java.sql.Array;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public class Workload {
  static final String ROW_SQL =
      "SELECT id, name, email, note, amount, signup, ref, doc, tags FROM customers WHERE id = ";

  public static void main(String[] args) throws Exception {
    String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/airlock?user=agent&sslmode=disable";
    Map<String, Object> report = new LinkedHashMap<>();
    Map<String, Object> extras = new LinkedHashMap<>();
    try (Connection c = DriverManager.getConnection(url)) {
      try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(ROW_SQL + "1")) {
        report.put("select", one(rs));
      }
      // prepareThreshold (default 5): from the 5th execution the statement is server-prepared
      // and results of the types pgjdbc knows come in binary.
      List<Object> prepared = new ArrayList<>();
      try (PreparedStatement ps = c.prepareStatement(ROW_SQL + "?")) {
        for (int i = 0; i < 8; i++) {
          ps.setInt(1, 1);
          try (ResultSet rs = ps.executeQuery()) {
            prepared.add(one(rs));
          }
        }
      }
      report.put("prepared", prepared);
      report.put("denied", error(() -> update(c, "DELETE FROM customers")));
      report.put("after", count(c));

      Map<String, Object> tx = new LinkedHashMap<>();
      c.setAutoCommit(false);
      count(c);
      tx.put("denied", error(() -> update(c, "DELETE FROM customers")));
      c.rollback();
      c.setAutoCommit(true);
      tx.put("after", count(c));
      report.put("tx", tx);

      try (PreparedStatement ps = c.prepareStatement("INSERT INTO events (what) VALUES (?)")) {
        ps.setString(1, "pgjdbc");
        report.put("inserted", ps.executeUpdate());
      }
      try (PreparedStatement ps = c.prepareStatement("UPDATE customers SET name = name WHERE id = ?")) {
        ps.setInt(1, 1);
        Map<String, Object> approval = new LinkedHashMap<>();
        approval.put("rows", ps.executeUpdate());
        List<Object> notices = new ArrayList<>();
        for (SQLWarning w = ps.getWarnings(); w != null; w = w.getNextWarning()) notices.add(w.getMessage());
        approval.put("notices", notices);
        report.put("approval", approval);
      }

      // A batch of inserts (one round trip), then a batch with a denied statement.
      try (PreparedStatement ps = c.prepareStatement("INSERT INTO events (what) VALUES (?)")) {
        for (int i = 0; i < 3; i++) {
          ps.setString(1, "batch " + i);
          ps.addBatch();
        }
        int total = 0;
        for (int n : ps.executeBatch()) total += n;
        extras.put("batch", total);
      }
      extras.put(
          "batchDenied",
          error(
              () -> {
                try (Statement s = c.createStatement()) {
                  s.addBatch("INSERT INTO events (what) VALUES ('ok')");
                  s.addBatch("DELETE FROM customers");
                  s.executeBatch();
                }
              }));
      extras.put("batchAfter", count(c));
    }
    // Binary from the first execution (prepareThreshold=-1).
    try (Connection c = DriverManager.getConnection(url + "&prepareThreshold=-1");
        PreparedStatement ps = c.prepareStatement(ROW_SQL + "?")) {
      ps.setInt(1, 1);
      try (ResultSet rs = ps.executeQuery()) {
        extras.put("forceBinary", one(rs));
      }
      extras.put(
          "derivedInt",
          error(
              () -> {
                try (PreparedStatement p = c.prepareStatement("SELECT length(email) AS n FROM customers");
                    ResultSet rs = p.executeQuery()) {
                  rs.next();
                }
              }));
      try (PreparedStatement p = c.prepareStatement("SELECT length(email)::text AS n FROM customers");
          ResultSet rs = p.executeQuery()) {
        rs.next();
        extras.put("derivedText", rs.getString(1));
      }
    }
    report.put("extras", extras);
    System.out.println(json(report));
  }

  interface Sql {
    void run() throws SQLException;
  }

  static Object error(Sql f) {
    try {
      f.run();
      return null;
    } catch (SQLException e) {
      Map<String, Object> m = new LinkedHashMap<>();
      // A batch failure wraps the server's error.
      SQLException cause = e.getNextException() != null ? e.getNextException() : e;
      m.put("code", cause.getSQLState());
      m.put("message", cause.getMessage());
      return m;
    }
  }

  static void update(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement()) {
      s.executeUpdate(sql);
    }
  }

  static long count(Connection c) throws SQLException {
    try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM customers")) {
      rs.next();
      return rs.getLong(1);
    }
  }

  static Map<String, Object> one(ResultSet rs) throws SQLException {
    if (!rs.next()) throw new SQLException("no row");
    Map<String, Object> r = new LinkedHashMap<>();
    r.put("id", String.valueOf(rs.getInt("id")));
    r.put("name", rs.getString("name"));
    r.put("email", rs.getString("email"));
    r.put("note", rs.getString("note"));
    r.put("amount", rs.getBigDecimal("amount").toPlainString());
    r.put("signup", String.valueOf(rs.getDate("signup")));
    r.put("ref", String.valueOf(rs.getObject("ref")));
    r.put("doc", rs.getString("doc"));
    Array tags = rs.getArray("tags");
    List<Object> t = new ArrayList<>();
    for (Object o : (Object[]) tags.getArray()) t.add(String.valueOf(o));
    r.put("tags", t);
    return r;
  }

  static String json(Object o) {
    if (o == null) return "null";
    if (o instanceof Number || o instanceof Boolean) return o.toString();
    if (o instanceof Map<?, ?> m) {
      StringBuilder b = new StringBuilder("{");
      for (Map.Entry<?, ?> e : m.entrySet()) {
        if (b.length() > 1) b.append(',');
        b.append(json(String.valueOf(e.getKey()))).append(':').append(json(e.getValue()));
      }
      return b.append('}').toString();
    }
    if (o instanceof List<?> l) {
      StringBuilder b = new StringBuilder("[");
      for (Object x : l) {
        if (b.length() > 1) b.append(',');
        b.append(json(x));
      }
      return b.append(']').toString();
    }
    StringBuilder b = new StringBuilder("\"");
    for (char ch : o.toString().toCharArray()) {
      if (ch == '"' || ch == '\\') b.append('\\').append(ch);
      else if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
      else b.append(ch);
    }
    return b.append('"').toString();
  }
}
