// A JVM agent with the defaults: java.net.http.HttpClient, the proxy from -Dhttps.proxyHost/Port if
// any (a JVM ignores HTTPS_PROXY), trust from the default truststore, i.e. whatever
// JAVA_TOOL_OPTIONS names (the injector's truststore.p12). Prints the status, then the body, or
// the exception. Run as a single-file program: java HttpsGet.java URL
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class HttpsGet {
  public static void main(String[] args) throws Exception {
    // The JDK's default selector: https.proxyHost/Port when set, else direct (a captured socket).
    var client = HttpClient.newBuilder().proxy(ProxySelector.getDefault()).version(HttpClient.Version.HTTP_1_1).build();
    var request = HttpRequest.newBuilder(URI.create(args[0])).header("Authorization", "Bearer agent-fake").build();
    try {
      var response = client.send(request, HttpResponse.BodyHandlers.ofString());
      System.out.println(response.statusCode());
      System.out.println(response.body());
    } catch (Exception e) {
      System.out.println("error");
      System.out.println(e);
    }
  }
}
